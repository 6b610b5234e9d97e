package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// maxBatch bounds how many alerts one batch carries.
const maxBatch = 128

// defaultBatchTimeout bounds a batch whose requests carry no deadline.
const defaultBatchTimeout = 5 * time.Second

// Enqueuer group-commits the jobs of concurrent webhook requests: whatever
// arrived while the previous batch was in flight goes out as the next one,
// as one run of the enqueue script (one per hash slot on Redis Cluster).
// An idle bridge sends a batch of one at once (no timer, no added
// latency); a busy one pays one round trip, two syscalls and one script
// run per batch instead of per alert, on both sides of the socket.
//
// There is no sending goroutine: the request that finds the Enqueuer idle
// sends the batch itself, and when its batch is answered it hands the next
// batch to the first request waiting, whose goroutine sends that one. So
// a lone request is a plain round trip, and no goroutine is started, woken
// or grown just to send.
type Enqueuer struct {
	c redis.UniversalClient
	// batches observes each batch's size (alerts), when set.
	batches prometheus.Histogram

	mu      sync.Mutex
	pending []*enqueueReq
	busy    bool // a batch is being sent, or its sender has been named
}

type enqueueReq struct {
	ctx context.Context
	// deadline bounds the request's Redis work (Options.RequestTimeout),
	// so that the caller needs no context with a timer of its own.
	deadline time.Time
	// calls are the request's scripts, in order: one per firing alert of
	// a notification.
	calls []Call
	// done gets, in order, at most one "lead" and then the result.
	done chan enqueueRes

	// Under Enqueuer.mu: queued while in pending; named when it has been
	// told to send the next batch and has not started yet.
	queued, named bool
}

// Call is one run of the enqueue script (EnqueueCall).
type Call struct {
	keys []string
	args []any
}

// scriptResult is one script's answer.
type scriptResult struct {
	vals []any
	err  error
}

type enqueueRes struct {
	results []scriptResult
	err     error // the request's, before any script ran
	lead    bool  // send the next batch
}

func newEnqueuer(c redis.UniversalClient) *Enqueuer { return &Enqueuer{c: c} }

// NewEnqueuer returns an enqueuer on c; batches, when set, observes how
// many alerts each batch carried.
func NewEnqueuer(c redis.UniversalClient, batches prometheus.Histogram) *Enqueuer {
	e := newEnqueuer(c)
	e.batches = batches
	return e
}

// Enqueue states: what the enqueue script did with one job.
const (
	// Duplicate: the episode was already taken; Value is its state.
	Duplicate = 0
	// Queued: the job is on its node's stream; Value is the entry id.
	Queued = 1
	// NotLive: the node is unknown or silent past the node silence; the
	// episode is taken as done and nothing was queued. Value is the
	// node's last-seen time (Unix ms), "" for never.
	NotLive = 2
)

// Enqueued is what became of one job of Enqueue.
type Enqueued struct {
	State int
	Value string
	Err   error
}

// Enqueue runs calls, in order, in the next batch and waits for their
// answers (see enqueueAll). An error is the whole request's (nothing was
// sent); a job's own failure is its Enqueued.Err.
func (e *Enqueuer) Enqueue(ctx context.Context, deadline time.Time, calls []Call) ([]Enqueued, error) {
	res, err := e.enqueueAll(ctx, deadline, calls)
	if err != nil {
		return nil, err
	}
	out := make([]Enqueued, len(res))
	for i, r := range res {
		out[i].Err = r.err
		if r.err != nil {
			continue
		}
		n, _ := r.vals[0].(int64)
		v, _ := r.vals[1].(string)
		out[i].State, out[i].Value = int(n), v
	}
	return out, nil
}

// enqueueAll runs the enqueue script once per call, all in the next batch
// and in order, and waits for their answers or ctx. A request still
// waiting for its batch at deadline (or ctx's, if earlier) is not sent and
// fails with context.DeadlineExceeded; a batch in flight is bounded by its
// members' deadlines.
func (e *Enqueuer) enqueueAll(ctx context.Context, deadline time.Time, calls []Call) ([]scriptResult, error) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	r := &enqueueReq{ctx: ctx, deadline: deadline, calls: calls, done: make(chan enqueueRes, 1), queued: true}
	e.mu.Lock()
	e.pending = append(e.pending, r)
	idle := !e.busy
	e.busy = true
	e.mu.Unlock()
	if idle {
		e.lead()
	}
	for {
		select {
		case res := <-r.done:
			if res.lead {
				e.mu.Lock()
				r.named = false
				e.mu.Unlock()
				e.lead()
				continue
			}
			return res.results, res.err
		case <-ctx.Done():
			e.mu.Lock()
			if r.queued {
				e.pending = slices.DeleteFunc(e.pending, func(p *enqueueReq) bool { return p == r })
				r.queued = false
			}
			named := r.named
			r.named = false
			e.mu.Unlock()
			if named {
				// It was to send the next batch: someone must.
				go e.lead()
			}
			return nil, ctx.Err()
		}
	}
}

// lead sends one batch — what is pending, the caller's own request first,
// up to maxBatch scripts (and at least one request) — and then names the
// sender of the next, or marks the Enqueuer idle.
func (e *Enqueuer) lead() {
	e.mu.Lock()
	n, scripts := 0, 0
	for n < len(e.pending) && (n == 0 || scripts+len(e.pending[n].calls) <= maxBatch) {
		scripts += len(e.pending[n].calls)
		n++
	}
	batch := e.pending[:n:n]
	if n < len(e.pending) {
		e.pending = slices.Clone(e.pending[n:])
	} else {
		e.pending = nil
	}
	for _, r := range batch {
		r.queued = false
	}
	e.mu.Unlock()
	if len(batch) > 0 {
		e.send(batch)
	}
	e.mu.Lock()
	if len(e.pending) == 0 {
		e.busy = false
		e.mu.Unlock()
		return
	}
	next := e.pending[0]
	next.named = true
	e.mu.Unlock()
	next.done <- enqueueRes{lead: true}
}

func (e *Enqueuer) send(batch []*enqueueReq) {
	live := batch[:0:0]
	now := time.Now()
	for _, r := range batch {
		switch {
		case r.ctx.Err() != nil:
			r.done <- enqueueRes{err: r.ctx.Err()}
		case !r.deadline.IsZero() && !now.Before(r.deadline):
			r.done <- enqueueRes{err: context.DeadlineExceeded}
		default:
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	// The batch's deadline is its most patient request's (at most
	// defaultBatchTimeout from now when one has none): one request giving
	// up must not abort the others' writes.
	var deadline time.Time
	for _, r := range live {
		d := r.deadline
		if d.IsZero() {
			d = now.Add(defaultBatchTimeout)
		}
		if d.After(deadline) {
			deadline = d
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	groups := e.group(live)
	if e.batches != nil {
		n := 0
		for _, g := range groups {
			n += len(g.at)
		}
		e.batches.Observe(float64(n))
	}
	cmds := make([]*redis.Cmd, len(groups))
	run := func(evalsha bool) {
		_, _ = e.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, g := range groups {
				if cmds[i] != nil && !isNoScript(cmds[i].Err()) {
					continue
				}
				if evalsha {
					cmds[i] = enqueueScript.EvalSha(ctx, p, g.keys, g.args...)
				} else {
					cmds[i] = enqueueScript.Eval(ctx, p, g.keys, g.args...)
				}
			}
			return nil
		})
	}
	run(true)
	for _, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			// Not run (Redis restarted and lost its script cache): safe to
			// send again with the script's source.
			run(false)
			break
		}
	}
	results := make([][]scriptResult, len(live))
	for i, r := range live {
		results[i] = make([]scriptResult, len(r.calls))
	}
	for i, g := range groups {
		vals, err := cmds[i].Slice()
		if err == nil && len(vals) != 2*len(g.at) {
			err = fmt.Errorf("enqueue script returned %d values for %d alerts", len(vals), len(g.at))
		}
		for j, at := range g.at {
			res := &results[at.req][at.call]
			switch {
			case err != nil:
				res.err = err
			case vals[2*j] == int64(-1):
				msg, _ := vals[2*j+1].(string)
				res.err = errors.New(msg)
			default:
				res.vals = vals[2*j : 2*j+2 : 2*j+2]
			}
		}
	}
	for i, r := range live {
		r.done <- enqueueRes{results: results[i]}
	}
}

// scriptGroup is one run of the enqueue script: the calls of a batch that
// share a hash slot, in batch order.
type scriptGroup struct {
	keys []string
	args []any
	at   []callAt
}

// callAt names a call of a batch: live[req].calls[call].
type callAt struct{ req, call int }

// group merges the batch's calls into as few script runs as the
// deployment allows: one on a single Redis (or Sentinel's primary); on
// Redis Cluster, one per hash tag, since a script's keys must share a slot.
// Calls keep their batch order within a group, and calls of one node
// (hence of one episode) always share a group.
func (e *Enqueuer) group(live []*enqueueReq) []scriptGroup {
	_, cluster := e.c.(*redis.ClusterClient)
	var groups []scriptGroup
	byTag := map[string]int{} // on a single Redis every call has the tag ""
	for ri, r := range live {
		for ci := range r.calls {
			c := &r.calls[ci]
			tag := ""
			if cluster {
				tag = hashTag(c.keys[1])
			}
			gi, ok := byTag[tag]
			if !ok {
				gi = len(groups)
				byTag[tag] = gi
				groups = append(groups, scriptGroup{})
			}
			g := &groups[gi]
			g.keys = append(g.keys, c.keys...)
			g.args = append(g.args, c.args...)
			g.at = append(g.at, callAt{ri, ci})
		}
	}
	return groups
}

// hashTag is the part of key that Redis Cluster hashes: the text between
// the first { and the next }, when not empty; otherwise the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }
