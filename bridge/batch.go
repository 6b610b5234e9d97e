package bridge

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds how many enqueue scripts one pipeline carries.
const maxBatch = 128

// defaultBatchTimeout bounds a batch whose requests carry no deadline.
const defaultBatchTimeout = 5 * time.Second

// enqueuer group-commits the enqueue scripts of concurrent webhook
// requests: whatever arrived while the previous pipeline was in flight goes
// out as the next one. An idle bridge sends a batch of one at once (no
// timer, no added latency); a busy one pays one round trip and two
// syscalls per batch instead of per alert, on both sides of the socket.
//
// There is no sending goroutine: the request that finds the enqueuer idle
// sends the batch itself, and when its batch is answered it hands the next
// batch to the first request waiting, whose goroutine sends that one. So
// a lone request is a plain round trip, and no goroutine is started, woken
// or grown just to send.
type enqueuer struct {
	c redis.UniversalClient

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
	calls []scriptCall
	// done gets, in order, at most one "lead" and then the result.
	done chan enqueueRes

	// Under enqueuer.mu: queued while in pending; named when it has been
	// told to send the next batch and has not started yet.
	queued, named bool
}

// scriptCall is one run of the enqueue script.
type scriptCall struct {
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

func newEnqueuer(c redis.UniversalClient) *enqueuer { return &enqueuer{c: c} }

// enqueueAll runs the enqueue script once per call, all in the next batch
// and in order, and waits for their answers or ctx. A request still
// waiting for its batch at deadline (or ctx's, if earlier) is not sent and
// fails with context.DeadlineExceeded; a batch in flight is bounded by its
// members' deadlines.
func (e *enqueuer) enqueueAll(ctx context.Context, deadline time.Time, calls []scriptCall) ([]scriptResult, error) {
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
// sender of the next, or marks the enqueuer idle.
func (e *enqueuer) lead() {
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

func (e *enqueuer) send(batch []*enqueueReq) {
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
	var calls []*scriptCall
	for _, r := range live {
		for i := range r.calls {
			calls = append(calls, &r.calls[i])
		}
	}
	cmds := make([]*redis.Cmd, len(calls))
	run := func(evalsha bool) {
		_, _ = e.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range calls {
				if cmds[i] != nil && !isNoScript(cmds[i].Err()) {
					continue
				}
				if evalsha {
					cmds[i] = enqueueScript.EvalSha(ctx, p, c.keys, c.args...)
				} else {
					cmds[i] = enqueueScript.Eval(ctx, p, c.keys, c.args...)
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
	next := 0
	for _, r := range live {
		results := make([]scriptResult, len(r.calls))
		for i := range results {
			vals, err := cmds[next].Slice()
			results[i] = scriptResult{vals: vals, err: err}
			next++
		}
		r.done <- enqueueRes{results: results}
	}
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }
