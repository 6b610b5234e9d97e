package runbooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/controls"
	"github.com/medicops/medic/internal/execx"
	"github.com/medicops/medic/internal/keys"
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

// LeaseKey is the lease of one agent on one node, without the Redis prefix
// (the Redis locker adds it: medic:lease:NODE:AGENT).
func LeaseKey(node, agent string) string { return keys.LeaseName(node, agent) }

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

// run is the state of one run.
type run struct {
	e     *Engine
	ctx   context.Context
	rec   *RunRecord
	req   Request
	cfg   *hcl.Config
	rb    *hcl.Runbook
	agent *hcl.Agent
	log   *slog.Logger

	releases  []func()
	silenceID string // the Alertmanager silence this run created
}

// Run serves one request to completion and always returns a record; it
// never panics on bad input. The record's Outcome says what happened and
// Reason why.
func (e *Engine) Run(ctx context.Context, req Request) *RunRecord {
	start := e.opts.Now()
	trigger := req.Trigger
	if trigger == "" {
		trigger = TriggerAlert
	}
	rec := &RunRecord{
		ID:          req.ID,
		Agent:       req.Agent,
		Runbook:     req.Runbook,
		Node:        e.opts.Node,
		Trigger:     trigger,
		Fingerprint: req.Alert.Fingerprint,
		StartsAt:    req.Alert.StartsAt,
		Labels:      req.Alert.Labels,
		Steps:       []Step{},
		Started:     start,
	}
	if rec.ID == "" {
		rec.ID = NewRunID(start)
	}
	if req.Redelivered {
		rec.Redelivered = RedeliveredStartedAgain
	}
	e.setLive(rec.ID, true)
	defer e.setLive(rec.ID, false)
	r := &run{e: e, ctx: ctx, rec: rec, req: req}
	r.log = e.log.With("run", rec.ID, "trigger", trigger, "node", rec.Node)
	r.execute()

	rec.Finished = e.opts.Now()
	rec.Duration = rec.Finished.Sub(rec.Started).Seconds()
	runbook := ""
	if r.rb != nil {
		runbook = r.rb.Name // from the config: a bounded label
	}
	if !(req.RetriesHeld && rec.HeldBy != "") {
		// A run its caller will try again is not an outcome yet.
		e.metrics.observe(runbook, rec)
	}
	level := slog.LevelInfo
	switch rec.Outcome {
	case OutcomeEscalated, OutcomeFailed, OutcomeUnroutable, OutcomeExpired:
		// The agent is still broken, or nothing was done about the alert:
		// what an operator greps the log for.
		level = slog.LevelWarn
	}
	r.log.Log(ctx, level, "run finished", "outcome", rec.Outcome, "reason", rec.Reason, "duration", rec.Finished.Sub(rec.Started))
	return rec
}

// finish sets the outcome unless one is set already. Reason and Error
// are redacted here, where they enter the record, so that every reader —
// the stored record, the escalation, the log — sees them redacted.
func (r *run) finish(outcome, reason string) {
	if r.rec.Outcome != "" {
		return
	}
	r.rec.Outcome = outcome
	r.rec.Reason = r.redact(reason)
}

func (r *run) fail(err error) {
	r.rec.Error = r.redact(err.Error())
	r.finish(OutcomeFailed, err.Error())
}

func (r *run) execute() {
	defer func() {
		if p := recover(); p != nil {
			r.fail(fmt.Errorf("internal error: %v", p))
			r.log.Error("run panicked", "panic", p)
		}
	}()
	e := r.e
	if e.opts.Config == nil || e.opts.Agents == nil {
		r.fail(errors.New("engine has no config or no agents"))
		return
	}
	r.cfg = e.opts.Config()
	if r.cfg == nil {
		r.fail(errors.New("no configuration loaded"))
		return
	}
	if !r.resolve() {
		return
	}
	if r.paused() {
		return
	}
	if r.rb.Switchover != nil {
		// The agent's lease guards its process, which a switchover does not
		// touch; the pool's own lock (held by the coordinator) serialises
		// switchovers. Taking the lease here would make the switchover and
		// the restart of the same dead agent skip each other.
		r.switchover()
		return
	}
	if !r.lease() {
		return
	}
	defer r.releaseLease()
	// Expire the silence before the slot and lease go, whatever ended the
	// run (a panic included: the recover above runs after this).
	defer r.unsilence()
	r.lifecycle()
}

// lease takes the agent's lease: first in this process (the watchdog and
// the job consumer share the engine), then in Options.Locker (other
// processes). false means the run is over. When the shared locker fails
// (Redis down) the run goes on under the in-process lease: a node must
// still be able to restart its own crashed agents without Redis.
//
// A shared lease whose holder is provably gone — this run's own earlier
// attempt, a run of an earlier incarnation of the node, a run of this
// process that has ended — is taken over (RunLocker). One held by a live
// run ends this run skipped, naming the holder (RunRecord.HeldBy), so the
// job consumer can try the episode again once the holder is done.
func (r *run) lease() bool {
	e := r.e
	key := LeaseKey(e.opts.Node, r.rec.Agent)
	held := fmt.Sprintf("another run holds the lease of agent %s on node %s", r.rec.Agent, e.opts.Node)
	// The in-process lease: the holder's run id under one lock, so a run
	// refused always learns who holds the agent.
	e.liveMu.Lock()
	holder, busy := e.holders[key]
	if !busy {
		e.holders[key] = r.rec.ID
	}
	e.liveMu.Unlock()
	if busy {
		r.rec.HeldBy = holder
		r.finish(OutcomeSkipped, fmt.Sprintf("run %s holds the lease of agent %s on node %s and is still running", holder, r.rec.Agent, e.opts.Node))
		return false
	}
	var once sync.Once
	r.releases = append(r.releases, func() {
		once.Do(func() {
			e.liveMu.Lock()
			delete(e.holders, key)
			e.liveMu.Unlock()
		})
	})
	if e.opts.Locker == nil {
		return true
	}
	s := r.step("lease")
	var lease Lease
	var err error
	if rl, isRL := e.opts.Locker.(RunLocker); isRL {
		me := LeaseHolder{Run: r.rec.ID, Incarnation: e.opts.Incarnation}
		lease, err = rl.Acquire(r.ctx, key, me, e.opts.LeaseTTL, e.Live)
	} else {
		var ok bool
		lease.Release, ok, err = e.opts.Locker.TryLock(r.ctx, key, e.opts.LeaseTTL)
		if !ok {
			lease.Release = nil
		}
	}
	switch {
	case err != nil:
		r.done(s, false, "shared lease unavailable; going on under this process's lease only", err)
		r.log.Warn("shared lease unavailable; going on under this process's lease only", "key", key, "err", err)
	case lease.Release == nil:
		r.releaseLease()
		if lease.Holder.Run != "" {
			r.rec.HeldBy = lease.Holder.Run
			held = fmt.Sprintf("run %s holds the lease of agent %s on node %s and is still running", lease.Holder.Run, r.rec.Agent, e.opts.Node)
		}
		r.done(s, false, held, nil)
		r.finish(OutcomeSkipped, held)
		return false
	default:
		r.releases = append(r.releases, lease.Release)
		switch lease.How {
		case LeaseOwn:
			r.done(s, true, "lease already ours (a retried request whose answer was lost)", nil)
		case LeasePredecessor:
			r.done(s, true, fmt.Sprintf("took over the lease from this run's previous attempt (incarnation %s): its node stopped", lease.Holder.Incarnation), nil)
		case LeaseRestarted:
			r.done(s, true, fmt.Sprintf("took over the lease from run %s of an earlier incarnation of node %s: that process is gone", lease.Holder.Run, e.opts.Node), nil)
		case LeaseOrphaned:
			r.done(s, true, fmt.Sprintf("took over the lease run %s left behind (it ended while Redis was unreachable)", lease.Holder.Run), nil)
		}
	}
	return true
}

func (r *run) releaseLease() {
	for i := len(r.releases) - 1; i >= 0; i-- {
		r.releases[i]()
	}
	r.releases = nil
}

// resolve picks the runbook and the agent; false means the run is over.
func (r *run) resolve() bool {
	req, cfg := r.req, r.cfg
	switch {
	case req.Runbook != "":
		for _, rb := range cfg.Runbooks {
			if rb.Name == req.Runbook {
				r.rb = rb
				break
			}
		}
		if r.rb == nil {
			if req.Runbook == WatchdogRunbook && r.rec.Trigger == TriggerWatchdog {
				r.rb = DefaultWatchdogRunbook()
			} else {
				r.fail(fmt.Errorf("no runbook called %q", req.Runbook))
				return false
			}
		}
	default:
		rb, skipped := cfg.Match(req.Alert)
		if rb == nil {
			if r.rec.Trigger != TriggerWatchdog {
				reason := "no runbook matches the alert"
				if len(skipped) > 0 {
					reason += ": " + strings.Join(skipped, "; ")
				}
				r.finish(OutcomeSkipped, reason)
				return false
			}
			rb = DefaultWatchdogRunbook()
		}
		r.rb = rb
	}
	r.rec.Runbook = r.rb.Name

	if r.rec.Agent == "" {
		name, err := r.rb.TargetAgent(req.Alert)
		if err != nil {
			r.fail(fmt.Errorf("runbook %q: target agent: %w", r.rb.Name, err))
			return false
		}
		r.rec.Agent = name
	}
	r.log = r.log.With("runbook", r.rb.Name, "agent", r.rec.Agent)
	if r.rb.Switchover != nil {
		// A switchover acts on the pool's control record in Redis, not on a
		// local process, so the agent need not run here.
		r.agent = cfg.Agent(r.rec.Agent)
		return true
	}
	for _, a := range cfg.AgentsForNode(r.e.opts.Node) {
		if a.Name == r.rec.Agent {
			r.agent = a
			return true
		}
	}
	if cfg.Agent(r.rec.Agent) == nil {
		r.finish(OutcomeSkipped, fmt.Sprintf("no agent called %q is configured", r.rec.Agent))
	} else {
		r.finish(OutcomeSkipped, fmt.Sprintf("agent %q does not run on node %q", r.rec.Agent, r.e.opts.Node))
	}
	return false
}

// step starts recording one step; done finishes it.
func (r *run) step(name string) *Step {
	return &Step{Name: name, Started: r.e.opts.Now()}
}

func (r *run) done(s *Step, ok bool, detail string, err error) {
	s.Duration = r.e.opts.Now().Sub(s.Started).Seconds()
	s.OK = ok
	s.Detail = detail
	if err != nil {
		s.Error = err.Error()
	}
	if len(s.Output) > MaxStepOutput {
		s.Output = s.Output[:MaxStepOutput]
	}
	r.redactStep(s)
	r.rec.Steps = append(r.rec.Steps, *s)
	r.log.Debug("step", "step", s.Name, "ok", ok, "detail", detail, "error", s.Error)
}

// lifecycle is docs/design.md §1.1, with the gate (safety.go) between what
// the run learnt and the first thing it does.
func (r *run) lifecycle() {
	alive, ok := r.liveness()
	if !ok {
		return
	}
	var causes []*hcl.Cause
	why := "agent is not running"
	if alive {
		pass, ok := r.probe("probe")
		if !ok || r.cancelled() {
			return
		}
		if pass {
			r.finish(OutcomeHealthy, "alive and its probe passes: the cause is elsewhere, nothing touched")
			return
		}
		causes = r.diagnose()
		why = "probe failed, no cause matched: restart alone"
		if len(causes) > 0 {
			why = "probe failed; repaired " + strings.Join(r.rec.Causes, ", ")
		}
	}
	if ok, causes, why = r.gate(alive, causes, why); !ok {
		return
	}
	for _, c := range causes {
		r.repair(c)
	}
	if r.cancelled() {
		return
	}
	if !r.restart(why) {
		return
	}
	r.verify()
}

// cancelled ends the run as failed when its context is done: a node
// shutting down is not the agent's fault and must not escalate.
func (r *run) cancelled() bool {
	if err := r.ctx.Err(); err != nil {
		r.fail(fmt.Errorf("cancelled: %w", err))
		return true
	}
	return false
}

func (r *run) liveness() (alive, ok bool) {
	s := r.step("liveness")
	ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
	defer cancel()
	alive, detail, err := r.e.opts.Agents.Alive(ctx, r.rec.Agent)
	if err != nil {
		r.done(s, false, detail, err)
		r.fail(fmt.Errorf("liveness of %s: %w", r.rec.Agent, err))
		return false, false
	}
	r.done(s, alive, detail, nil)
	return alive, true
}

// probe runs the functional probe as step name. An agent with neither a
// probe nor a heartbeat has nothing to test beyond liveness, so liveness
// stands in for it. ok is false when the run is over (an internal error).
func (r *run) probe(name string) (pass, ok bool) {
	if r.agent != nil && r.agent.Probe == nil && r.agent.Heartbeat == nil {
		s := r.step(name)
		ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
		defer cancel()
		alive, detail, err := r.e.opts.Agents.Alive(ctx, r.rec.Agent)
		if detail == "" {
			detail = "no probe configured"
		} else {
			detail = "no probe configured; " + detail
		}
		r.done(s, alive && err == nil, detail, err)
		return alive && err == nil, true
	}
	s := r.step(name)
	ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
	defer cancel()
	pass, detail, err := r.e.opts.Agents.Probe(ctx, r.rec.Agent)
	// A probe error (timeout, refused) is a failed probe, not a medic
	// failure: the agent is what did not answer.
	r.done(s, pass && err == nil, detail, err)
	return pass && err == nil, true
}

// diagnose samples usage and evaluates every cause; it returns the matched
// ones in runbook order.
func (r *run) diagnose() []*hcl.Cause {
	s := r.step("diagnose")
	ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
	defer cancel()
	usage, err := r.e.opts.Agents.Usage(ctx, r.rec.Agent)
	if err != nil {
		// Without usage no threshold can be judged; the agent is still
		// restarted, which is what "no cause matched" does.
		r.done(s, false, "usage could not be sampled; no cause can be named", err)
		return nil
	}
	r.rec.Usage = &usage
	ectx := hcl.EvalContext(r.req.Alert, r.agent, usage)
	var matched []*hcl.Cause
	var yes, no, bad []string
	for _, c := range r.rb.Causes {
		hit, diags := c.Eval(ectx)
		switch {
		case diags.HasErrors():
			bad = append(bad, fmt.Sprintf("%s (%s)", c.Name, diags.Error()))
		case hit:
			matched = append(matched, c)
			yes = append(yes, c.Name)
		default:
			no = append(no, c.Name)
		}
	}
	r.rec.Causes = yes
	detail := fmt.Sprintf("usage memory=%.2f cpu=%.2f disk=%.2f", usage.Memory, usage.CPU, usage.Disk)
	if r.agent != nil {
		t := r.agent.Thresholds
		detail += fmt.Sprintf(" (thresholds %.2f/%.2f/%.2f)", t.Memory, t.CPU, t.Disk)
	}
	detail += "; matched: " + listOrNone(yes)
	if len(no) > 0 {
		detail += "; not matched: " + strings.Join(no, ", ")
	}
	var evalErr error
	if len(bad) > 0 {
		evalErr = fmt.Errorf("conditions that could not be evaluated: %s", strings.Join(bad, "; "))
	}
	r.done(s, evalErr == nil, detail, evalErr)
	return matched
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// env is the environment every script of the run sees. Label values are
// data in the environment, never part of an argv or a shell string.
func (r *run) env(cause string) map[string]string {
	env := execx.LabelEnv(r.req.Alert.Labels)
	env["MEDIC_AGENT"] = r.rec.Agent
	env["MEDIC_NODE"] = r.e.opts.Node
	env["MEDIC_RUN_ID"] = r.rec.ID
	env["MEDIC_RUNBOOK"] = r.rec.Runbook
	env["MEDIC_TRIGGER"] = r.rec.Trigger
	if cause != "" {
		env["MEDIC_CAUSE"] = cause
	}
	if r.rec.Usage != nil {
		env["MEDIC_USAGE_MEMORY"] = fmt.Sprintf("%.4f", r.rec.Usage.Memory)
		env["MEDIC_USAGE_CPU"] = fmt.Sprintf("%.4f", r.rec.Usage.CPU)
		env["MEDIC_USAGE_DISK"] = fmt.Sprintf("%.4f", r.rec.Usage.Disk)
	}
	if r.agent != nil && r.agent.Workdir != "" {
		env["MEDIC_WORKDIR"] = r.agent.Workdir
	}
	return env
}

// script runs argv as step s and records its exit code and output.
func (r *run) script(s *Step, argv []string, env map[string]string, timeout time.Duration, stdin []byte) execx.Result {
	res := r.e.opts.Exec(r.ctx, s.Name, execx.Cmd{
		Argv:      argv,
		Env:       env,
		Timeout:   timeout,
		Grace:     r.e.opts.KillGrace,
		MaxOutput: MaxStepOutput,
		Stdin:     stdin,
	})
	if res.ExitCode >= 0 || res.TimedOut {
		code := res.ExitCode
		s.ExitCode = &code
	}
	s.Output = res.Output
	return res
}

func (r *run) repair(c *hcl.Cause) {
	s := r.step("repair:" + c.Name)
	if len(c.Repair) == 0 {
		r.done(s, true, "no repair script: restart only", nil)
		return
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = hcl.DefaultCauseTimeout
	}
	res := r.script(s, c.Repair, r.env(c.Name), timeout, nil)
	detail := fmt.Sprintf("%s exited %d", c.Repair[0], res.ExitCode)
	if res.TimedOut {
		detail = fmt.Sprintf("%s timed out after %s; its process group was killed", c.Repair[0], timeout)
	}
	if res.Truncated {
		detail += "; output truncated"
	}
	r.done(s, res.OK(), detail, res.Err)
}

// restart restarts the agent within its budget; false means the run is
// over (escalated or failed).
func (r *run) restart(why string) bool {
	name := r.rec.Agent
	wait, exhausted := r.takeRestart()
	if exhausted != "" {
		s := r.step("budget")
		r.done(s, false, exhausted, nil)
		r.escalate(exhausted)
		return false
	}
	if wait > 0 {
		s := r.step("backoff")
		err := r.e.opts.Sleep(r.ctx, wait)
		r.done(s, err == nil, fmt.Sprintf("restarting too often: waited %s before restarting", wait), err)
		if err != nil {
			r.fail(fmt.Errorf("cancelled during backoff: %w", err))
			return false
		}
	}
	s := r.step("restart")
	ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.RestartTimeout)
	defer cancel()
	// The detail reads as what happened, not as the state before: a
	// record saying `restart ok "agent is not running"` looks like a
	// restart that did not work.
	if err := r.e.opts.Agents.Restart(ctx, name); err != nil {
		r.done(s, false, "restart failed ("+why+")", err)
		if r.cancelled() {
			return false
		}
		r.escalate("restart failed: " + err.Error())
		return false
	}
	r.done(s, true, "restarted ("+why+")", nil)
	return true
}

// verify probes up to verify.attempts times, verify.interval apart.
func (r *run) verify() {
	v := r.rb.Verify
	attempts := v.Attempts
	if attempts <= 0 {
		attempts = hcl.DefaultVerifyAttempts
	}
	interval := v.Interval
	if interval <= 0 {
		interval = hcl.DefaultVerifyInterval
	}
	for i := 1; i <= attempts; i++ {
		if i > 1 {
			if err := r.e.opts.Sleep(r.ctx, interval); err != nil {
				r.fail(fmt.Errorf("cancelled during verify: %w", err))
				return
			}
		}
		pass, ok := r.probe(fmt.Sprintf("verify %d/%d", i, attempts))
		if !ok || r.cancelled() {
			return
		}
		if pass {
			r.finish(OutcomeRecovered, fmt.Sprintf("healthy again after restart (verify attempt %d of %d)", i, attempts))
			return
		}
	}
	r.escalate(fmt.Sprintf("still failing after %d verify attempts", attempts))
}

// switchover moves the pool away from the agent.
func (r *run) switchover() {
	s := r.step("switchover")
	pool, err := r.rb.Switchover.PoolName(r.req.Alert)
	if err != nil {
		r.done(s, false, "", err)
		r.fail(fmt.Errorf("runbook %q: pool: %w", r.rb.Name, err))
		return
	}
	if r.e.opts.Switcher == nil {
		r.done(s, false, "pool "+pool, errors.New("this process has no switcher"))
		r.fail(errors.New("switchover runbook but no switcher configured"))
		return
	}
	detail, err := r.e.opts.Switcher.Switchover(r.ctx, pool, r.rec.Agent)
	if detail == "" {
		detail = "pool " + pool
	}
	r.done(s, err == nil, detail, err)
	if err != nil {
		r.escalate(fmt.Sprintf("switchover of pool %s failed: %v", pool, err))
		return
	}
	r.finish(OutcomeSwitched, "pool "+pool+" switched away from "+r.rec.Agent)
}

// takeRestart asks the restart budget for one restart: from the shared
// controls when there are some (one agent has one budget whichever engine
// restarts it), else, or while Redis is unreachable, from this process.
func (r *run) takeRestart() (wait time.Duration, exhausted string) {
	limit, window := effectiveBudget(r.rb.Budget)
	now := r.e.opts.Now()
	if c := r.e.opts.Controls; c != nil {
		ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
		defer cancel()
		bo := controls.Backoff{Base: r.e.opts.BackoffBase, Max: r.e.opts.BackoffMax, Reset: r.e.opts.BackoffReset}
		wait, exhausted, err := c.TakeRestart(ctx, r.e.opts.Node, r.rec.Agent, limit, window, bo, now, r.rec.ID)
		if err == nil {
			return wait, exhausted
		}
		s := r.step("budget")
		r.done(s, false, "shared restart budget unavailable; counting in this process only", err)
		r.log.Warn("shared restart budget unavailable; counting in this process only", "err", err)
	}
	return r.e.budgets.take(r.rec.Agent, hcl.Budget{Restarts: limit, Window: window}, now)
}
