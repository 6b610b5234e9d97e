package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/runbooks"
)

// DefaultGroup is the consumer group on every node's job stream.
const DefaultGroup = "medic"

// ConsumerOptions configure a Consumer. Client, Node, Runner and Store are
// required.
type ConsumerOptions struct {
	Client redis.UniversalClient
	Keys   Keys
	// Node is the node whose stream medic:{node:NODE}:jobs is read.
	Node string
	// Name is this consumer's name in the group; default Node, so that a
	// restarted node finds its own pending jobs first.
	Name string
	// Group is the consumer group; default DefaultGroup.
	Group  string
	Runner runbooks.Runner
	Store  *RunStore

	// Concurrency bounds the jobs run at once (default 4); the engine's
	// per-agent lease keeps two runs for one agent apart.
	Concurrency int
	// Block is the XREADGROUP BLOCK time (default 2s); it only bounds how
	// quickly a stop is noticed, not how quickly a job starts.
	Block time.Duration
	// ClaimIdle is how long a job may sit unacknowledged with another
	// consumer of the group before this one claims it (XAUTOCLAIM);
	// default 5m.
	ClaimIdle time.Duration
	// Grace is how long runs in flight may finish after Run's context
	// ends; runs still going then are handed back (left pending, run again
	// on the next start). Default 30s.
	Grace time.Duration

	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
}

// Consumer is the node's side of the job streams: it reads its node's
// stream through a consumer group, runs each job with the Runner, stores
// the run record and only then acknowledges the job.
//
// After a crash, the node's pending jobs are read first (ID 0) and run
// again under the same run id, so the record is replaced, not doubled; a
// job whose record was stored before the crash is only acknowledged. A job
// past its deadline is recorded as expired, a job whose alert resolved
// before it started as cancelled.
type Consumer struct {
	o      ConsumerOptions
	log    *slog.Logger
	stream string

	mu       sync.Mutex
	inflight map[string]bool
}

// NewConsumer returns a consumer; Run starts it.
func NewConsumer(o ConsumerOptions) *Consumer {
	if o.Name == "" {
		o.Name = o.Node
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Block <= 0 {
		o.Block = 2 * time.Second
	}
	if o.ClaimIdle <= 0 {
		o.ClaimIdle = 5 * time.Minute
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil, nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Consumer{
		o: o, log: o.Logger.With("node", o.Node), stream: o.Keys.Jobs(o.Node),
		inflight: map[string]bool{},
	}
}

// Run consumes until ctx ends, then lets runs in flight finish for Grace
// and returns.
func (c *Consumer) Run(ctx context.Context) error {
	if c.o.Node == "" || c.o.Runner == nil || c.o.Store == nil || c.o.Client == nil {
		return errors.New("job consumer: node, runner, store and client are required")
	}
	runCtx, stopRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRuns()
	// Execution slots: a job holds one while it works, none while its run
	// is parked (execSlot).
	slots := make(chan struct{}, c.o.Concurrency)
	var wg sync.WaitGroup
	defer func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(c.o.Grace):
			c.log.Warn("runs still in flight at shutdown are handed back", "grace", c.o.Grace)
			stopRuns()
			<-done
		}
	}()
	dispatch := func(m redis.XMessage) bool {
		c.mu.Lock()
		busy := c.inflight[m.ID]
		if !busy {
			c.inflight[m.ID] = true
		}
		c.mu.Unlock()
		if busy {
			return true
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			c.mu.Lock()
			delete(c.inflight, m.ID)
			c.mu.Unlock()
			return false
		}
		wg.Go(func() {
			x := &execSlot{slots: slots, held: true}
			defer func() {
				x.free()
				c.mu.Lock()
				delete(c.inflight, m.ID)
				c.mu.Unlock()
			}()
			c.handle(ctx, runCtx, m, x)
		})
		return true
	}

	backoff := newBackoff()
	pendingDone, lastClaim := false, time.Time{}
	c.log.Info("job consumer started", "stream", c.stream, "group", c.o.Group, "consumer", c.o.Name)
	for ctx.Err() == nil {
		if err := c.ensureGroup(ctx); err != nil {
			c.retry(ctx, backoff, "create consumer group", err)
			continue
		}
		// Our own pending jobs first: those a previous run of this node
		// read and never acknowledged.
		if !pendingDone {
			msgs, err := c.read(ctx, "0", 100, 0)
			if err != nil {
				c.retry(ctx, backoff, "read pending jobs", err)
				continue
			}
			for _, m := range msgs {
				if !dispatch(m) {
					return nil
				}
			}
			if len(msgs) < 100 {
				pendingDone = true
			}
			continue
		}
		if time.Since(lastClaim) >= c.o.ClaimIdle/2 {
			msgs, err := c.claim(ctx)
			if err != nil {
				c.retry(ctx, backoff, "claim stale jobs", err)
				continue
			}
			lastClaim = time.Now()
			for _, m := range msgs {
				if !dispatch(m) {
					return nil
				}
			}
		}
		// Wait for a free slot before taking a new job, so that a taken
		// job is never left waiting behind a long run.
		select {
		case slots <- struct{}{}:
			<-slots
		case <-ctx.Done():
			return nil
		}
		msgs, err := c.read(ctx, ">", 1, min(c.o.Block, c.o.ClaimIdle/2))
		if err != nil {
			// The reply may have been lost with the connection after Redis
			// made the entry pending for us: read our pending entries again
			// (those in flight here are skipped by dispatch).
			pendingDone = false
			c.retry(ctx, backoff, "read jobs", err)
			continue
		}
		backoff.reset()
		for _, m := range msgs {
			if !dispatch(m) {
				return nil
			}
		}
	}
	return nil
}

func (c *Consumer) ensureGroup(ctx context.Context) error {
	err := c.o.Client.XGroupCreateMkStream(ctx, c.stream, c.o.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	return nil
}

func (c *Consumer) read(ctx context.Context, from string, count int64, block time.Duration) ([]redis.XMessage, error) {
	a := &redis.XReadGroupArgs{
		Group: c.o.Group, Consumer: c.o.Name, Streams: []string{c.stream, from}, Count: count, Block: block,
	}
	if block == 0 {
		a.Block = -1 // no BLOCK argument: pending entries are answered at once
	}
	res, err := c.o.Client.XReadGroup(ctx, a).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []redis.XMessage
	for _, s := range res {
		out = append(out, s.Messages...)
	}
	return out, nil
}

// claim takes over jobs other consumers of the group (a node that ran
// under another consumer name) left unacknowledged for ClaimIdle.
func (c *Consumer) claim(ctx context.Context) ([]redis.XMessage, error) {
	var out []redis.XMessage
	start := "0-0"
	for range 10 {
		msgs, next, err := c.o.Client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: c.stream, Group: c.o.Group, Consumer: c.o.Name, MinIdle: c.o.ClaimIdle, Start: start, Count: 100,
		}).Result()
		if err != nil {
			return out, err
		}
		out = append(out, msgs...)
		if next == "0-0" || next == "" {
			break
		}
		start = next
	}
	return out, nil
}

func (c *Consumer) retry(ctx context.Context, b *backoff, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	d := b.next()
	c.log.Warn("job consumer: "+what+" failed; retrying", "err", err, "in", d)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// execSlot is the execution slot of one job: held while it works, given
// back while it waits (Park), so that runs waiting for an approval, a
// concurrency slot or a busy agent never starve the node.
type execSlot struct {
	slots chan struct{}
	mu    sync.Mutex
	held  bool
}

func (x *execSlot) free() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.held {
		<-x.slots
		x.held = false
	}
}

// park gives the slot back and returns what takes one again: it blocks
// until a slot is free or ctx ends (then the job goes on without one; it
// is ending).
func (x *execSlot) park(ctx context.Context) func() {
	x.free()
	return func() {
		select {
		case x.slots <- struct{}{}:
			x.mu.Lock()
			x.held = true
			x.mu.Unlock()
		case <-ctx.Done():
		}
	}
}

// handle takes one job to its end: a stored record and an acknowledgement.
func (c *Consumer) handle(ctx, runCtx context.Context, m redis.XMessage, x *execSlot) {
	raw, _ := m.Values["job"].(string)
	var job Job
	if raw == "" {
		// Deleted under us (pending entry of an XDELed job): nothing to run.
		c.ack(runCtx, "", m.ID, "")
		return
	}
	if err := json.Unmarshal([]byte(raw), &job); err != nil || job.ID == "" {
		c.log.Error("dropping malformed job", "entry", m.ID, "err", err)
		c.ack(runCtx, "", m.ID, "")
		return
	}
	log := c.log.With("run", job.ID, "agent", job.Agent, "runbook", job.Runbook)
	dedup := c.o.Keys.Dedup(c.o.Node, job.Alert.Fingerprint, job.Alert.StartsAt)

	var state string
	if !c.persist(runCtx, log, "mark job running", func(ctx context.Context) error {
		var err error
		state, err = startScript.Run(ctx, c.o.Client, []string{dedup}, job.ID).Text()
		return err
	}) {
		return
	}
	now := c.o.Now()
	var rec *runbooks.RunRecord
	var expired string
	switch {
	case state == "d":
		c.o.Metrics.jobsConsumed.WithLabelValues("done").Inc()
		c.ack(runCtx, dedup, m.ID, job.ID)
		return
	case state == "r" && c.stored(runCtx, job.ID):
		// The node stored the record and died before acknowledging.
		log.Info("job finished before a restart; acknowledging it")
		c.o.Metrics.jobsConsumed.WithLabelValues("done").Inc()
		c.ack(runCtx, dedup, m.ID, job.ID)
		return
	case state == "c":
		if c.stored(runCtx, job.ID) {
			c.o.Metrics.jobsConsumed.WithLabelValues("cancelled").Inc()
			c.ack(runCtx, dedup, m.ID, job.ID)
			return
		}
		rec = c.ownRecord(job, now, runbooks.OutcomeCancelled, "the alert resolved before the job started")
	case now.After(job.Deadline):
		// Too late to act: the engine records it expired and escalates.
		expired = fmt.Sprintf("the job reached the node %s after its deadline (queued %s)",
			now.Sub(job.Deadline).Round(time.Millisecond), job.Enqueued.Format(time.RFC3339))
	}
	if rec != nil {
		c.o.Metrics.observe(rec)
		c.o.Metrics.jobsConsumed.WithLabelValues(rec.Outcome).Inc()
		log.Info("job not run", "outcome", rec.Outcome)
	} else {
		if state == "r" {
			log.Info("running a job again: its node stopped before finishing it")
		}
		c.o.Metrics.jobWait.Observe(now.Sub(job.Enqueued).Seconds())
		save := func(r *runbooks.RunRecord) {
			if r.Node == "" {
				r.Node = c.o.Node
			}
			c.persist(runCtx, log, "store intermediate run record", func(ctx context.Context) error { return c.o.Store.Save(ctx, r) })
		}
		req := runbooks.Request{
			ID: job.ID, Runbook: job.Runbook, Agent: job.Agent, Alert: job.Alert, Trigger: runbooks.TriggerAlert,
			// An approve-mode run stores its pending_approval record so
			// that operators can find it; the final record replaces it.
			Progress:    save,
			Park:        func() func() { return x.park(runCtx) },
			Redelivered: state == "r",
			RetriesHeld: true,
			Expired:     expired,
		}
		rec = c.o.Runner.Run(runCtx, req)
		// Skipped because a live run of another episode acts on the agent:
		// this episode is not handled. Its record names that run; it stays
		// pending and runs again, parked, once the holder is done.
		wait := time.Second
		for rec != nil && rec.Outcome == runbooks.OutcomeSkipped && rec.HeldBy != "" && runCtx.Err() == nil {
			rec.ID = job.ID
			rec.Reason += fmt.Sprintf("; this episode is tried again in %s", wait)
			save(rec)
			log.Info("agent busy with another run; trying the episode again", "holder", rec.HeldBy, "in", wait)
			unpark := x.park(runCtx)
			select {
			case <-time.After(wait):
			case <-runCtx.Done():
			}
			unpark()
			wait = min(2*wait, 15*time.Second)
			if runCtx.Err() != nil {
				break
			}
			rec = c.o.Runner.Run(runCtx, req)
		}
		if runCtx.Err() != nil {
			log.Warn("run interrupted by shutdown; the job stays pending and runs again on restart")
			c.o.Metrics.jobsConsumed.WithLabelValues("handed_back").Inc()
			return
		}
		if rec == nil {
			rec = c.ownRecord(job, now, runbooks.OutcomeFailed, "the runner returned no record")
		}
		rec.ID = job.ID
		c.o.Metrics.jobsConsumed.WithLabelValues("run").Inc()
	}
	if rec.Node == "" {
		rec.Node = c.o.Node
	}
	// Acknowledge only after the record is stored.
	if !c.persist(runCtx, log, "store run record", func(ctx context.Context) error { return c.o.Store.Save(ctx, rec) }) {
		return
	}
	c.ack(runCtx, dedup, m.ID, job.ID)
}

func (c *Consumer) ownRecord(job Job, now time.Time, outcome, why string) *runbooks.RunRecord {
	rec := &runbooks.RunRecord{
		ID: job.ID, Runbook: job.Runbook, Agent: job.Agent, Node: c.o.Node, Trigger: runbooks.TriggerAlert,
		Fingerprint: job.Alert.Fingerprint, StartsAt: job.Alert.StartsAt, Labels: job.Alert.Labels,
		Steps: []runbooks.Step{}, Outcome: outcome, Reason: why, Started: now, Finished: now,
	}
	if outcome == runbooks.OutcomeFailed {
		rec.Error = why
	}
	return rec
}

func (c *Consumer) stored(ctx context.Context, id string) bool {
	var found bool
	c.persist(ctx, c.log, "look up run record", func(ctx context.Context) error {
		rec, err := c.o.Store.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		// A pending_approval record is the run's intermediate state, not
		// its end: a node that died while waiting runs the job again. So
		// is a skipped record naming the live run it waits for.
		found = err == nil && rec.Outcome != runbooks.OutcomePendingApproval && rec.HeldBy == ""
		return err
	})
	return found
}

func (c *Consumer) ack(ctx context.Context, dedup, entry, id string) {
	c.persist(ctx, c.log, "acknowledge job", func(ctx context.Context) error {
		if dedup == "" {
			_, err := c.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.XAck(ctx, c.stream, c.o.Group, entry)
				p.XDel(ctx, c.stream, entry)
				return nil
			})
			return err
		}
		return finishScript.Run(ctx, c.o.Client, []string{dedup, c.stream}, id, c.o.Group, entry).Err()
	})
}

// persist retries a Redis write until it succeeds or ctx ends (Redis
// restarting must not turn a finished run into a lost or repeated one).
func (c *Consumer) persist(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) bool {
	b := newBackoff()
	for {
		err := f(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := b.next()
		log.Warn("job consumer: "+what+" failed; retrying", "err", err, "in", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return false
		}
	}
}

type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = 50 * time.Millisecond
	} else {
		b.d = min(2*b.d, 2*time.Second)
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }
