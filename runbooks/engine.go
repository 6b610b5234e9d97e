package runbooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/hcl"
)

// Defaults of Options.
const (
	DefaultLeaseTTL       = 60 * time.Second
	DefaultRestartTimeout = 60 * time.Second
	DefaultProbeTimeout   = 30 * time.Second
	DefaultKillGrace      = time.Second
	DefaultBackoffBase    = time.Second
	DefaultBackoffMax     = time.Minute
	DefaultBackoffReset   = 10 * time.Minute
)

// WatchdogRunbook is the name of the built-in runbook a watchdog run uses
// when no configured runbook matches its alert: restart alone, then verify.
const WatchdogRunbook = "watchdog"

// Options are the dependencies of an Engine. Config, Agents and Locker are
// required; everything else has a default.
type Options struct {
	// Config returns the current configuration. It is read once per run, so
	// a reload swaps in a new config without disturbing runs in flight.
	Config func() *hcl.Config
	// Node is this node's name: the engine only acts on its agents.
	Node   string
	Agents Agents
	// Locker gives one run per agent at a time across processes
	// (NewRedisLocker). Within the process the engine always keeps its own
	// lease as well; nil means that one only.
	Locker Locker
	// Incarnation is this node process's incarnation (a fresh id per
	// start, published by the Redis locker): the lease of a run names it,
	// so that a later incarnation can tell its predecessor's leases are
	// gone. Empty: leases of gone holders are waited out (TTL).
	Incarnation string
	// Switcher serves switchover runbooks; nil makes them fail.
	Switcher Switcher

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics registered
	// Metrics are the remediation metrics, shared by every engine, the
	// bridge and the job consumer of the process; nil: NewMetrics on
	// Registerer, for an engine that is the only counter of runs.
	Metrics *Metrics
	// HTTPClient posts escalation webhooks; nil means a client with no
	// redirects followed and the escalate block's timeout.
	HTTPClient *http.Client

	// Now and Sleep are the clock; tests inject a fake one. Sleep returns
	// early with ctx's error when ctx ends.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error

	// LeaseTTL is the lease's time to live; the Redis locker renews it
	// every TTL/3 while the run lasts.
	LeaseTTL time.Duration
	// RestartTimeout bounds one Agents.Restart; ProbeTimeout bounds one
	// Agents.Alive/Probe/Usage call (the probe has its own, shorter timeout).
	RestartTimeout time.Duration
	ProbeTimeout   time.Duration
	// KillGrace is how long a timed-out script's process group gets between
	// SIGTERM and SIGKILL.
	KillGrace time.Duration

	// Backoff between consecutive restarts of one agent: the n-th restart
	// of a streak comes at least BackoffBase·2^(n-2) (capped at BackoffMax)
	// after the previous one; the first restart of a streak is immediate.
	// A streak ends when the agent went BackoffReset without a restart.
	// A negative BackoffBase turns backoff off.
	BackoffBase  time.Duration
	BackoffMax   time.Duration
	BackoffReset time.Duration

	// Controls is the shared state in Redis behind pauses, approvals, the
	// restart budget, the circuit breaker and the concurrency limit, so
	// that every engine enforces the same limits. nil: the budget, circuit
	// and concurrency limit hold within this process only, nothing can be
	// paused, and approve-mode runs fail. A simulation passes its own
	// virtual-time store (ControlStore).
	Controls ControlStore
	// Exec runs the scripts of a run (repairs, escalation commands); nil
	// means execx.Run. A simulation answers by step name instead.
	Exec ExecFunc
	// Progress receives the intermediate records of every run (see
	// Request.Progress, which the job consumer sets per run).
	Progress func(*RunRecord)
	// ApprovalPoll is how often a run waiting for approval looks for a
	// decision (default DefaultApprovalPoll); ConcurrencyPoll how often a
	// run waiting for a concurrency slot tries again (default LeaseTTL/4,
	// at most 1s).
	ApprovalPoll    time.Duration
	ConcurrencyPoll time.Duration
}

// Engine runs runbooks for the agents of one node. It is safe for
// concurrent use: the bridge's job consumer and the node's watchdog share
// one engine, and the lease keeps their runs for one agent apart.
type Engine struct {
	opts    Options
	log     *slog.Logger
	budgets *budgets
	metrics *Metrics
	client  *http.Client

	circuits *memCircuits
	slots    *memSlots
	silencer Silencer

	liveMu  sync.Mutex
	live    map[string]int    // runs of this engine in progress, by id
	holders map[string]string // lease key → run id holding it in this process: one run per agent within the process
}

var _ Runner = (*Engine)(nil)

// New returns an engine. It registers its metrics with opts.Registerer.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(opts.Registerer)
	}
	registerPoolInfo(opts.Registerer, opts.Config, opts.Node)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.RestartTimeout <= 0 {
		opts.RestartTimeout = DefaultRestartTimeout
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	if opts.KillGrace < 0 {
		opts.KillGrace = 0
	} else if opts.KillGrace == 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase = DefaultBackoffBase
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.BackoffReset <= 0 {
		opts.BackoffReset = DefaultBackoffReset
	}
	if opts.ApprovalPoll <= 0 {
		opts.ApprovalPoll = DefaultApprovalPoll
	}
	opts.Controls = noControls(opts.Controls)
	if opts.Exec == nil {
		opts.Exec = runExec
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{
			// An escalation goes where it was configured to go, not where a
			// redirect points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Engine{
		opts:    opts,
		log:     opts.Logger,
		budgets: newBudgets(opts.BackoffBase, opts.BackoffMax, opts.BackoffReset),
		metrics: opts.Metrics,
		client:  client,

		circuits: newMemCircuits(),
		slots:    newMemSlots(),
		silencer: Silencer{Client: client},
		live:     map[string]int{},
		holders:  map[string]string{},
	}
}

// Live reports whether a run with id is in progress in this engine.
func (e *Engine) Live(id string) bool {
	e.liveMu.Lock()
	defer e.liveMu.Unlock()
	return e.live[id] > 0
}

func (e *Engine) setLive(id string, on bool) {
	e.liveMu.Lock()
	defer e.liveMu.Unlock()
	if on {
		e.live[id]++
	} else if e.live[id]--; e.live[id] <= 0 {
		delete(e.live, id)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewRunID returns a run id that sorts by creation time (millisecond
// prefix, UTC) and is unique by its random suffix.
func NewRunID(now time.Time) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	now = now.UTC()
	return fmt.Sprintf("%s%03d-%s", now.Format("20060102T150405"), now.Nanosecond()/int(time.Millisecond), hex.EncodeToString(b[:]))
}

// DefaultWatchdogRunbook is the runbook a watchdog run falls back to:
// restart alone, verify with the defaults, the default budget, no
// escalation target.
func DefaultWatchdogRunbook() *hcl.Runbook {
	return &hcl.Runbook{
		Name:   WatchdogRunbook,
		Verify: hcl.Verify{Attempts: hcl.DefaultVerifyAttempts, Interval: hcl.DefaultVerifyInterval},
		Budget: hcl.Budget{Restarts: hcl.DefaultBudgetRestarts, Window: hcl.DefaultBudgetWindow},
	}
}
