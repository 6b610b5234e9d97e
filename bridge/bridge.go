// Package bridge is medic's HTTP surface towards Alertmanager and
// operators: the webhook receiver (authentication, bounded decoding through
// package alert, routing through package route, per-alert fan out onto the
// job streams of package jobs), the runs API, the operator endpoints, the
// status page and the escalation of alerts no node can take.
package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/route"
	"github.com/medicops/medic/runbooks"
)

// Options are the dependencies of a Bridge. Client and Config are required.
type Options struct {
	Client redis.UniversalClient
	Keys   jobs.Keys
	// Config returns the current configuration (reloads swap it).
	Config func() *hcl.Config
	// Reload parses, validates and swaps in the configuration; POST
	// /-/reload calls it and answers with its error. nil: reload refused.
	Reload func(ctx context.Context) error
	// Store keeps run records; nil means a store on Client with defaults.
	Store *jobs.RunStore
	// Controls holds pauses, approvals and agents' circuit breakers;
	// nil: the operator endpoints (pause, approve, reject, reset) are not
	// served.
	Controls *controls.Store

	// Token, when set, is the bearer token every endpoint but /metrics,
	// /-/healthy and /-/ready requires (see Read, Write and Page).
	Token string
	// WebUsers says the listener's web config has basic_auth_users: it
	// has verified every request's basic-auth credentials, so the user
	// name is authenticated and is what an operator's action records.
	WebUsers bool
	// MaxBody bounds a webhook body; 0 means DefaultMaxBody.
	MaxBody int64
	// DedupTTL is how long an episode is remembered; 0 means jobs.DefaultDedupTTL.
	DedupTTL time.Duration
	// JobDeadline is how long a job may wait for its node; 0 means
	// jobs.DefaultJobDeadline.
	JobDeadline time.Duration
	// NodeSilence is how long a node may go without writing its state
	// snapshot (its last-seen key) and still be given jobs: an alert for
	// a node unknown or silent for longer is recorded unroutable and
	// escalated at once instead of queued. 0 turns the check off (every
	// node is routed); `medic bridge` defaults it to jobs.DefaultNodeSilence.
	NodeSilence time.Duration
	// RequestTimeout bounds the Redis work of one webhook request, so that
	// Alertmanager gets its 503 (and retries) instead of waiting on an
	// unreachable Redis; 0 means 5s.
	RequestTimeout time.Duration

	// Fleet serves GET /api/v1/agents; nil means a fleet view on Client
	// with defaults.
	Fleet *Fleet

	Logger  *slog.Logger
	Metrics *Metrics // nil: unregistered metrics
	// HTTPClient posts escalations of unroutable alerts and expired jobs.
	HTTPClient *http.Client
	// EscalationRetryFor and EscalationBackoff tune the retries of those
	// escalations (runbooks.Escalator's RetryFor and Backoff).
	EscalationRetryFor time.Duration
	EscalationBackoff  time.Duration
	Now                func() time.Time
}

// DefaultMaxBody is the webhook body limit of docs/design.md §5.
const DefaultMaxBody = 1 << 20

// Bridge turns Alertmanager notifications into jobs on node streams.
type Bridge struct {
	opts    Options
	log     *slog.Logger
	store   *jobs.RunStore
	metrics *Metrics
	client  *http.Client
	enq     *jobs.Enqueuer
	fleet   *Fleet

	bg sync.WaitGroup // escalations in flight

	loginFails *rate.Limiter // failed logins, all clients together (auth.go)
	// bgCtx ends the escalations' retries when the bridge is closed.
	bgCtx    context.Context
	bgCancel context.CancelFunc

	reclaimer *jobs.Reclaimer
}

// New returns a bridge.
func New(o Options) *Bridge {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.DedupTTL <= 0 {
		o.DedupTTL = jobs.DefaultDedupTTL
	}
	if o.JobDeadline <= 0 {
		o.JobDeadline = jobs.DefaultJobDeadline
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Store == nil {
		o.Store = jobs.NewRunStore(o.Client, jobs.StoreOptions{Keys: o.Keys})
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil, nil)
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Fleet == nil {
		o.Fleet = NewFleet(FleetOptions{Redis: o.Client, Keys: o.Keys, Now: o.Now})
	}
	enq := jobs.NewEnqueuer(o.Client, o.Metrics.enqueueBatch)
	b := &Bridge{opts: o, log: o.Logger, store: o.Store, metrics: o.Metrics, client: client, enq: enq, fleet: o.Fleet, loginFails: newLoginLimiter()}
	b.bgCtx, b.bgCancel = context.WithCancel(context.Background())
	b.reclaimer = jobs.NewReclaimer(jobs.ReclaimOptions{
		Client: o.Client, Keys: o.Keys, JobDeadline: o.JobDeadline, NodeSilence: o.NodeSilence,
		Lease: b.leaseFor, Expired: b.expire, Logger: o.Logger, Now: o.Now,
	})
	return b
}

// closeGrace is how long Close lets escalations in flight deliver before it
// cuts their retries short.
var closeGrace = 10 * time.Second

// Close waits up to 10s for background escalations, then ends their
// retries (an expired job's escalation cut short stays in its node's
// outbox, for another bridge or the next start to send) and waits for
// them.
func (b *Bridge) Close() {
	done := make(chan struct{})
	go func() { b.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace):
		b.log.Warn("stopping escalations still retrying")
	}
	b.bgCancel()
	<-done
}

// Store is the bridge's run store.
func (b *Bridge) Store() *jobs.RunStore { return b.store }

// Wait blocks until background escalations have finished.
func (b *Bridge) Wait() { b.bg.Wait() }

// Counts is the webhook's answer.
type Counts struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Ignored    int `json:"ignored"`
}

type verdict int

const (
	accepted verdict = iota
	duplicate
)

// Ingest handles the alerts of one notification, each by its own status.
// It stops at the first Redis failure: Alertmanager retries the whole
// notification, and the alerts handled so far then count as duplicates.
// Its Redis work is bounded by ctx and by Options.RequestTimeout.
//
// The jobs of consecutive firing alerts go to Redis together, in one
// batch of the enqueuer (one round trip and, with appendfsync always, one
// fsync for the lot); a resolved or unroutable alert first waits for the
// jobs before it, so each episode sees its alerts in order.
func (b *Bridge) Ingest(ctx context.Context, alerts []alert.Alert) (Counts, error) {
	var c Counts
	cfg := b.opts.Config()
	if cfg == nil {
		return c, errors.New("no configuration loaded")
	}
	// One deadline for the whole notification, as RequestTimeout says.
	deadline := time.Now().Add(b.opts.RequestTimeout)
	var (
		calls []jobs.Call
		queue []jobs.Job
		rbs   []*hcl.Runbook // jobs' runbooks
	)
	flush := func() error {
		if len(calls) == 0 {
			return nil
		}
		results, err := b.enq.Enqueue(ctx, deadline, calls)
		defer func() { calls, queue, rbs = calls[:0], queue[:0], rbs[:0] }()
		if err != nil {
			return fmt.Errorf("enqueue job for node %s: %w", queue[0].Node, err)
		}
		var first error
		for i, res := range results {
			job := &queue[i]
			if res.Err != nil {
				if first == nil {
					first = fmt.Errorf("enqueue job for node %s: %w", job.Node, res.Err)
				}
				continue
			}
			switch res.State {
			case jobs.Duplicate:
				c.Duplicates++
				b.metrics.deduplicated.Inc()
				continue
			case jobs.NotLive:
				if err := b.deadNode(ctx, deadline, job, rbs[i], res.Value); err != nil {
					if first == nil {
						first = err
					}
					continue
				}
			}
			c.Accepted++
			if res.State != jobs.Queued {
				continue
			}
			b.reclaimer.Routed(job.Node)
			if b.log.Enabled(ctx, slog.LevelDebug) {
				b.log.Debug("job queued", "run", job.ID, "runbook", job.Runbook, "agent", job.Agent, "node", job.Node, "fingerprint", job.Alert.Fingerprint)
			}
		}
		return first
	}
	for _, a := range alerts {
		b.metrics.alertReceived(a.Status)
		r := route.Decide(cfg, a)
		if r.Runbook == nil {
			c.Ignored++
			continue
		}
		if r.Node != "" && a.Status != "resolved" {
			job, call := b.prepareJob(a, r)
			queue = append(queue, job)
			rbs = append(rbs, r.Runbook)
			calls = append(calls, call)
			continue
		}
		if err := flush(); err != nil {
			return c, err
		}
		v, err := b.ingestOne(ctx, deadline, a, r)
		if err != nil {
			return c, err
		}
		switch v {
		case accepted:
			c.Accepted++
		case duplicate:
			c.Duplicates++
			b.metrics.deduplicated.Inc()
		}
	}
	return c, flush()
}

// prepareJob is the job of a firing alert routed to r.Node and the
// enqueue script call that takes its episode and queues it.
func (b *Bridge) prepareJob(a alert.Alert, r route.Decision) (jobs.Job, jobs.Call) {
	now := b.opts.Now()
	job := jobs.Job{
		ID: runbooks.NewRunID(now), Runbook: r.Runbook.Name, Agent: r.Agent, Node: r.Node,
		Alert: a, Enqueued: now, Deadline: now.Add(b.opts.JobDeadline),
	}
	data, err := json.Marshal(&job)
	if err != nil { // a jobs.Job has only strings, maps of strings and times
		panic(err)
	}
	var minSeen int64
	if b.opts.NodeSilence > 0 {
		minSeen = now.Add(-b.opts.NodeSilence).UnixMilli()
	}
	return job, jobs.EnqueueCall(b.opts.Keys, &job, data, b.opts.DedupTTL, minSeen)
}

// ingestOne handles a resolved alert or one with no usable node. These
// rarer paths bound their Redis work with a context (the enqueue of a
// firing alert is bounded by its batch's deadline, which costs no timer).
func (b *Bridge) ingestOne(ctx context.Context, deadline time.Time, a alert.Alert, r route.Decision) (verdict, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if r.Node == "" {
		return b.unroutable(ctx, a, r)
	}
	dedup := b.opts.Keys.Dedup(r.Node, a.Fingerprint, a.StartsAt)
	return b.resolve(ctx, a, r, dedup, b.opts.DedupTTL)
}

// resolve cancels the episode's job if it has not started; either way the
// resolution is recorded (a cancelled run record, or the log).
func (b *Bridge) resolve(ctx context.Context, a alert.Alert, r route.Decision, dedup string, ttl time.Duration) (verdict, error) {
	before, err := jobs.Resolve(ctx, b.opts.Client, dedup, ttl)
	if err != nil {
		return 0, fmt.Errorf("resolve job for node %s: %w", r.Node, err)
	}
	state, id, _ := strings.Cut(before, ":")
	switch {
	case state == "q" || (state == "c" && id != ""):
		// A retry of a cancellation whose record was not stored lands
		// here too ("c:ID"): store it once.
		if state == "c" {
			if _, err := b.store.Get(ctx, id); err == nil {
				return accepted, nil
			}
		}
		now := b.opts.Now()
		rec := &runbooks.RunRecord{
			ID: id, Runbook: r.Runbook.Name, Agent: r.Agent, Node: r.Node, Trigger: runbooks.TriggerAlert,
			Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Labels: a.Labels, Steps: []runbooks.Step{},
			Outcome: runbooks.OutcomeCancelled, Reason: "the alert resolved before the job started",
			Started: now, Finished: now,
		}
		if err := b.store.Save(ctx, rec); err != nil {
			return 0, err
		}
		if state == "q" {
			b.metrics.observe(rec)
			b.log.Info("job cancelled: alert resolved before it started", "run", id, "agent", r.Agent, "node", r.Node)
		}
	case state == "":
		b.log.Info("alert resolved before any firing notification; its episode is closed", "fingerprint", a.Fingerprint, "node", r.Node)
	default:
		b.log.Info("alert resolved; its job has already started", "run", id, "state", state, "agent", r.Agent, "node", r.Node)
	}
	return accepted, nil
}

// unroutable records an alert no node can be found for, counts it and
// escalates it, once per episode.
func (b *Bridge) unroutable(ctx context.Context, a alert.Alert, r route.Decision) (verdict, error) {
	if a.Status == "resolved" {
		return accepted, nil
	}
	now := b.opts.Now()
	id := runbooks.NewRunID(now)
	key := b.opts.Keys.DedupUnroutable(a.Fingerprint, a.StartsAt)
	ok, err := b.opts.Client.SetNX(ctx, key, "d:"+id, b.opts.DedupTTL).Result()
	if err != nil {
		return 0, fmt.Errorf("dedup unroutable alert: %w", err)
	}
	if !ok {
		return duplicate, nil
	}
	rec := &runbooks.RunRecord{
		ID: id, Runbook: r.Runbook.Name, Agent: r.Agent, Trigger: runbooks.TriggerAlert,
		Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Labels: a.Labels, Steps: []runbooks.Step{},
		Outcome: runbooks.OutcomeUnroutable, Reason: r.Reason, Started: now, Finished: now,
	}
	if err := b.store.Save(ctx, rec); err != nil {
		// Give the episode back so that Alertmanager's retry records it.
		b.opts.Client.Del(context.WithoutCancel(ctx), key)
		return 0, err
	}
	b.metrics.unroutable.Inc()
	b.metrics.observe(rec)
	b.log.Warn("alert unroutable", "run", id, "runbook", rec.Runbook, "agent", r.Agent, "reason", r.Reason)
	b.bg.Go(func() { b.escalate(r.Runbook, rec, a) })
	return accepted, nil
}
