package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/runbooks"
)

// Options are the dependencies of a Bridge. Client and Config are required.
type Options struct {
	Client redis.UniversalClient
	Keys   Keys
	// Config returns the current configuration (reloads swap it).
	Config func() *hcl.Config
	// Reload parses, validates and swaps in the configuration; POST
	// /-/reload calls it and answers with its error. nil: reload refused.
	Reload func(ctx context.Context) error
	// Store keeps run records; nil means a store on Client with defaults.
	Store *RunStore

	// Token, when set, is the bearer token every write endpoint requires.
	Token string
	// MaxBody bounds a webhook body; 0 means DefaultMaxBody.
	MaxBody int64
	// DedupTTL is how long an episode is remembered; 0 means DefaultDedupTTL.
	DedupTTL time.Duration
	// JobDeadline is how long a job may wait for its node; 0 means
	// DefaultJobDeadline.
	JobDeadline time.Duration
	// RequestTimeout bounds the Redis work of one webhook request, so that
	// Alertmanager gets its 503 (and retries) instead of waiting on an
	// unreachable Redis; 0 means 5s.
	RequestTimeout time.Duration

	Logger  *slog.Logger
	Metrics *Metrics // nil: unregistered metrics
	// HTTPClient posts escalations of unroutable alerts.
	HTTPClient *http.Client
	Now        func() time.Time
}

// DefaultMaxBody is the webhook body limit of DESIGN.md §5.
const DefaultMaxBody = 1 << 20

// Bridge turns Alertmanager notifications into jobs on node streams.
type Bridge struct {
	opts    Options
	log     *slog.Logger
	store   *RunStore
	metrics *Metrics
	client  *http.Client
	enq     *enqueuer

	bg sync.WaitGroup // escalations in flight
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
		o.DedupTTL = DefaultDedupTTL
	}
	if o.JobDeadline <= 0 {
		o.JobDeadline = DefaultJobDeadline
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Store == nil {
		o.Store = NewRunStore(o.Client, StoreOptions{Keys: o.Keys})
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Bridge{opts: o, log: o.Logger, store: o.Store, metrics: o.Metrics, client: client, enq: newEnqueuer(o.Client)}
}

// Store is the bridge's run store.
func (b *Bridge) Store() *RunStore { return b.store }

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
	ignored
)

// Ingest handles the alerts of one notification, each by its own status.
// It stops at the first Redis failure: Alertmanager retries the whole
// notification, and the alerts handled so far then count as duplicates.
// Its Redis work is bounded by ctx and by Options.RequestTimeout.
func (b *Bridge) Ingest(ctx context.Context, alerts []hcl.Alert) (Counts, error) {
	var c Counts
	cfg := b.opts.Config()
	if cfg == nil {
		return c, errors.New("no configuration loaded")
	}
	// One deadline for the whole notification, as RequestTimeout says.
	deadline := time.Now().Add(b.opts.RequestTimeout)
	for _, a := range alerts {
		b.metrics.alertReceived(a.Status)
		v, err := b.ingest(ctx, deadline, cfg, a)
		if err != nil {
			return c, err
		}
		switch v {
		case accepted:
			c.Accepted++
		case duplicate:
			c.Duplicates++
			b.metrics.deduplicated.Inc()
		case ignored:
			c.Ignored++
		}
	}
	return c, nil
}

func (b *Bridge) ingest(ctx context.Context, deadline time.Time, cfg *hcl.Config, a hcl.Alert) (verdict, error) {
	r := RouteAlert(cfg, a)
	if r.Runbook == nil {
		return ignored, nil
	}
	if r.Node != "" && !validNode(r.Node) {
		r.Reason = fmt.Sprintf("node name %q is not usable", r.Node)
		r.Node = ""
	}
	// The rarer paths bound their Redis work with a context; the enqueue
	// of a firing alert is bounded by its batch's deadline instead, which
	// costs no timer.
	if r.Node == "" {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return b.unroutable(ctx, a, r)
	}
	k := b.opts.Keys
	dedup := k.Dedup(r.Node, a.Fingerprint, a.StartsAt)
	ttl := b.opts.DedupTTL.Milliseconds()
	if a.Status == "resolved" {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return b.resolve(ctx, a, r, dedup, ttl)
	}
	now := b.opts.Now()
	job := Job{
		ID: runbooks.NewRunID(now), Runbook: r.Runbook.Name, Agent: r.Agent, Node: r.Node,
		Alert: a, Enqueued: now, Deadline: now.Add(b.opts.JobDeadline),
	}
	data := appendJob(make([]byte, 0, 512), &job)
	res, err := b.enq.enqueue(ctx, deadline, []string{dedup, k.Jobs(r.Node)}, job.ID, ttl, data)
	if err != nil {
		return 0, fmt.Errorf("enqueue job for node %s: %w", r.Node, err)
	}
	if n, _ := res[0].(int64); n == 0 {
		return duplicate, nil
	}
	if b.log.Enabled(ctx, slog.LevelDebug) {
		b.log.Debug("job queued", "run", job.ID, "runbook", job.Runbook, "agent", job.Agent, "node", job.Node, "fingerprint", a.Fingerprint)
	}
	return accepted, nil
}

// resolve cancels the episode's job if it has not started; either way the
// resolution is recorded (a cancelled run record, or the log).
func (b *Bridge) resolve(ctx context.Context, a hcl.Alert, r Route, dedup string, ttl int64) (verdict, error) {
	before, err := resolveScript.Run(ctx, b.opts.Client, []string{dedup}, ttl).Text()
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
func (b *Bridge) unroutable(ctx context.Context, a hcl.Alert, r Route) (verdict, error) {
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
