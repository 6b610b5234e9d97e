package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// entry is one config read from the stream.
type entry struct {
	id      string
	device  string
	seq     int64
	payload []byte
}

func parseEntry(m redis.XMessage) (entry, error) {
	e := entry{id: m.ID, device: asString(m.Values["device"])}
	e.seq, _ = strconv.ParseInt(asString(m.Values["seq"]), 10, 64)
	e.payload = []byte(asString(m.Values["payload"]))
	if e.device == "" || e.seq <= 0 {
		return e, fmt.Errorf("malformed entry %s: %v", m.ID, m.Values)
	}
	return e, nil
}

// epochRun is the agent's work during one epoch on duty. When the epoch
// ends (the agent was replaced, or a new epoch made it active again) every
// in-memory config is dropped and the next epoch starts over from the
// stream's pending entries.
type epochRun struct {
	c      *Consumer
	epoch  int64
	ctx    context.Context
	cancel context.CancelFunc

	steps chan *stepReq

	mu       sync.Mutex
	queues   map[string]*deviceQueue
	queued   map[string]bool // entry IDs read and not yet done
	buffered int
	space    chan struct{}
	wg       sync.WaitGroup

	// blocked are the devices the agent does not push to (blocked in
	// Redis, read at the epoch's start and when a worker blocks one):
	// their entries stay pending in the stream, unread into memory, so a
	// blocked device holds neither memory nor the other devices. reconcile
	// asks the reader to drop the devices an operator unblocked and read
	// the pending entries again.
	blocked   map[string]bool
	reconcile atomic.Bool
}

type deviceQueue struct {
	entries []entry
	// last fence answer, reusable for freshFor when it says on duty
	checked   time.Time
	checkDuty bool
	// ack is the device's last confirmed seq: Redis's, advanced locally
	// by the device's own confirmations until they are acknowledged.
	ack     int64
	pending []done // reused by deliver
}

func (c *Consumer) runEpoch(ctx context.Context, epoch int64) {
	ectx, cancel := context.WithCancel(ctx)
	r := &epochRun{c: c, epoch: epoch, ctx: ectx, cancel: cancel,
		queues: map[string]*deviceQueue{}, queued: map[string]bool{}, space: make(chan struct{}, 1),
		steps: make(chan *stepReq, 256), blocked: map[string]bool{}}
	stepperDone := make(chan struct{})
	go func() {
		defer close(stepperDone)
		r.stepper()
	}()
	log := c.o.Logger.With("epoch", epoch)
	log.Info("on duty")
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		r.watch()
	}()
	err := r.loadBlocked()
	if err == nil {
		err = r.read()
	}
	cancel()
	r.wg.Wait()
	close(r.steps)
	<-stepperDone
	<-watchDone
	if ctx.Err() == nil {
		log.Info("off duty", "reason", err)
	}
}

// watch ends the epoch as soon as the control hash says so, so that a
// replaced agent stops even while it waits for input.
// It also notices operator unblocks (ctl's unblocks counter) and, while
// devices are blocked here, asks the reader to reconcile now and then in
// case an unblock raced the worker that blocked the device.
func (r *epochRun) watch() {
	t := time.NewTicker(r.c.o.PollInterval)
	defer t.Stop()
	var unblocks string
	first := true
	lastCheck := time.Now()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			duty, epoch, u, err := r.c.duty(r.ctx)
			if err != nil {
				continue
			}
			if !duty || epoch != r.epoch {
				r.cancel()
				return
			}
			if (!first && u != unblocks) || (time.Since(lastCheck) > reconcileEvery && r.anyBlocked()) {
				r.reconcile.Store(true)
				lastCheck = time.Now()
			}
			first, unblocks = false, u
		}
	}
}

// reconcileEvery is how often an agent with blocked devices checks them
// against Redis even without an unblock signal.
const reconcileEvery = 2 * time.Second

func (r *epochRun) anyBlocked() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.blocked) > 0
}

// loadBlocked reads the pool's blocked devices at the epoch's start.
func (r *epochRun) loadBlocked() error {
	for r.ctx.Err() == nil {
		devs, err := r.c.o.Client.ZRange(r.ctx, r.c.k.Blocked(), 0, -1).Result()
		if err == nil {
			r.mu.Lock()
			for _, d := range devs {
				r.blocked[d] = true
			}
			r.mu.Unlock()
			if len(devs) > 0 {
				r.c.o.Logger.Warn("blocked devices: not pushing to them until an operator retries or skips", "count", len(devs))
			}
			return nil
		}
		r.c.o.Logger.Warn("read blocked devices", "err", err)
		sleep(r.ctx, r.c.o.PollInterval)
	}
	return context.Cause(r.ctx)
}

// unblocked drops from r.blocked the devices Redis no longer has blocked
// and reports whether there were any: then the reader reads the pending
// entries again, from the start, so that those devices' configs are
// queued in order before any new one.
func (r *epochRun) unblocked() bool {
	r.mu.Lock()
	devs := make([]string, 0, len(r.blocked))
	for d := range r.blocked {
		devs = append(devs, d)
	}
	r.mu.Unlock()
	if len(devs) == 0 {
		return false
	}
	scores, err := r.c.o.Client.ZMScore(r.ctx, r.c.k.Blocked(), devs...).Result()
	if err != nil {
		r.reconcile.Store(true) // try again
		return false
	}
	n := 0
	r.mu.Lock()
	for i, d := range devs {
		if scores[i] == 0 { // not a member (a since_ms is never 0)
			delete(r.blocked, d)
			n++
			r.c.o.Logger.Info("device unblocked: delivering again", "device", d, "epoch", r.epoch)
		}
	}
	r.mu.Unlock()
	return n > 0
}

// read feeds the device queues: the agent's own pending entries first
// (delivered to it before but never acknowledged), then new ones.
func (r *epochRun) read() error {
	c := r.c
	stream := c.k.In(c.o.Agent)
	if err := r.ensureGroup(stream); err != nil {
		return err
	}
	lastID := "0"
	var lastErr string
	for r.ctx.Err() == nil {
		if !r.waitSpace() {
			break
		}
		if r.reconcile.Swap(false) && r.unblocked() {
			lastID = "0"
		}
		args := &redis.XReadGroupArgs{
			Group: Group, Consumer: c.o.Agent, Streams: []string{stream, lastID},
			Count: int64(c.o.Batch), Block: -1,
		}
		if lastID == ">" {
			args.Block = 500 * time.Millisecond
		}
		res, err := c.o.Client.XReadGroup(r.ctx, args).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil && strings.HasPrefix(err.Error(), "NOGROUP"):
			if err := r.ensureGroup(stream); err != nil {
				return err
			}
			lastID = "0"
			continue
		case err != nil:
			if r.ctx.Err() != nil {
				return context.Cause(r.ctx)
			}
			if err.Error() != lastErr {
				c.o.Logger.Warn("read stream", "err", err)
				lastErr = err.Error()
			}
			// The server may have delivered entries whose reply was lost
			// (a dropped connection, a restart): they are in this
			// consumer's pending list now, so read that again; entries
			// already queued here are skipped by ID.
			lastID = "0"
			sleep(r.ctx, c.o.PollInterval)
			continue
		}
		lastErr = ""
		var msgs []redis.XMessage
		if len(res) > 0 {
			msgs = res[0].Messages
		}
		if lastID != ">" {
			if len(msgs) == 0 {
				lastID = ">"
				continue
			}
			lastID = msgs[len(msgs)-1].ID
		}
		for _, m := range msgs {
			if m.Values == nil {
				// A pending entry deleted after delivery (moved away by a
				// switchover): nothing to do here.
				c.o.Client.XAck(r.ctx, stream, Group, m.ID)
				continue
			}
			e, err := parseEntry(m)
			if err != nil {
				c.o.Logger.Error("dropping malformed entry", "err", err)
				c.o.Client.XAck(r.ctx, stream, Group, m.ID)
				c.o.Client.XDel(r.ctx, stream, m.ID)
				continue
			}
			r.add(e)
		}
	}
	return context.Cause(r.ctx)
}

func (r *epochRun) ensureGroup(stream string) error {
	for r.ctx.Err() == nil {
		err := r.c.o.Client.XGroupCreateMkStream(r.ctx, stream, Group, "0").Err()
		if err == nil || strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return nil
		}
		r.c.o.Logger.Warn("create consumer group", "err", err)
		sleep(r.ctx, r.c.o.PollInterval)
	}
	return r.ctx.Err()
}

func (r *epochRun) waitSpace() bool {
	for {
		r.mu.Lock()
		ok := r.buffered < r.c.o.MaxBuffered
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-r.ctx.Done():
			return false
		case <-r.space:
		case <-time.After(r.c.o.PollInterval):
			// Keep the consumer visibly alive to the coordinator's idle
			// check: re-reading the first pending entry changes nothing.
			r.c.o.Client.XReadGroup(r.ctx, &redis.XReadGroupArgs{
				Group: Group, Consumer: r.c.o.Agent, Block: -1, Count: 1,
				Streams: []string{r.c.k.In(r.c.o.Agent), "0"},
			})
		}
	}
}

func (r *epochRun) add(e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queued[e.id] || r.blocked[e.device] {
		return
	}
	r.queued[e.id] = true
	q := r.queues[e.device]
	start := q == nil
	if start {
		q = &deviceQueue{}
		r.queues[e.device] = q
	}
	q.entries = append(q.entries, e)
	r.buffered++
	if start {
		r.wg.Add(1)
		go r.work(e.device, q)
	}
}

// work delivers one device's configs in order, one request in flight: it
// takes the configs queued so far (up to maxWindow) and delivers them as
// one window.
func (r *epochRun) work(device string, q *deviceQueue) {
	defer r.wg.Done()
	var window []entry
	for {
		r.mu.Lock()
		if len(q.entries) == 0 || r.ctx.Err() != nil {
			r.buffered -= len(q.entries)
			delete(r.queues, device)
			r.mu.Unlock()
			return
		}
		n := min(len(q.entries), maxWindow)
		window = append(window[:0], q.entries[:n]...)
		clear(q.entries[:n])
		q.entries = q.entries[n:]
		if len(q.entries) == 0 {
			q.entries = nil // let the backing array go
		}
		r.mu.Unlock()

		blocked := r.deliver(q, window)

		r.mu.Lock()
		r.buffered -= len(window)
		for _, e := range window {
			delete(r.queued, e.id)
		}
		if blocked {
			// Drop the device's configs from memory; they stay pending
			// in the stream and are read again once it is unblocked.
			r.blocked[device] = true
			r.buffered -= len(q.entries)
			for _, e := range q.entries {
				delete(r.queued, e.id)
			}
			q.entries = nil
			delete(r.queues, device)
		}
		r.mu.Unlock()
		select {
		case r.space <- struct{}{}:
		default:
		}
		if blocked {
			return
		}
	}
}
