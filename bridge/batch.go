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
	keys     []string
	args     []any
	// done gets, in order, at most one "lead" and then the result.
	done chan enqueueRes

	// Under enqueuer.mu: queued while in pending; named when it has been
	// told to send the next batch and has not started yet.
	queued, named bool
}

type enqueueRes struct {
	vals []any
	err  error
	lead bool // send the next batch
}

func newEnqueuer(c redis.UniversalClient) *enqueuer { return &enqueuer{c: c} }

// enqueue runs the enqueue script in the next batch and waits for its
// answer or ctx. A request still waiting for its batch at deadline (or
// ctx's, if earlier) is not sent and fails with context.DeadlineExceeded;
// a batch in flight is bounded by its members' deadlines.
func (e *enqueuer) enqueue(ctx context.Context, deadline time.Time, keys []string, args ...any) ([]any, error) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	r := &enqueueReq{ctx: ctx, deadline: deadline, keys: keys, args: args, done: make(chan enqueueRes, 1), queued: true}
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
			return res.vals, res.err
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

// lead sends one batch — what is pending, the caller's own request first
// — and then names the sender of the next, or marks the enqueuer idle.
func (e *enqueuer) lead() {
	e.mu.Lock()
	batch := e.pending
	if len(batch) > maxBatch {
		batch = batch[:maxBatch:maxBatch]
		e.pending = slices.Clone(e.pending[maxBatch:])
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
	cmds := make([]*redis.Cmd, len(live))
	run := func(evalsha bool) {
		_, _ = e.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range live {
				if cmds[i] != nil && !isNoScript(cmds[i].Err()) {
					continue
				}
				if evalsha {
					cmds[i] = enqueueScript.EvalSha(ctx, p, r.keys, r.args...)
				} else {
					cmds[i] = enqueueScript.Eval(ctx, p, r.keys, r.args...)
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
	for i, r := range live {
		vals, err := cmds[i].Slice()
		r.done <- enqueueRes{vals: vals, err: err}
	}
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }
