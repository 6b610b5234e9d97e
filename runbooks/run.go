package runbooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/medicops/medic/hcl"
)

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

// fail ends the run "failed": medic itself could not do its work, so
// nothing was fixed and humans are told through the runbook's escalate
// block, unless the run was stopped by its node's shutdown (its job is
// delivered again at the next start).
func (r *run) fail(err error) {
	r.rec.Error = r.redact(err.Error())
	r.finish(OutcomeFailed, err.Error())
	if r.rb != nil && r.ctx.Err() == nil {
		r.escalate(err.Error())
	}
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
	if r.req.Expired != "" {
		r.finish(OutcomeExpired, r.req.Expired)
		r.escalate(r.req.Expired)
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
	reason := fmt.Sprintf("agent %q does not run on node %q", r.rec.Agent, r.e.opts.Node)
	if cfg.Agent(r.rec.Agent) == nil {
		reason = fmt.Sprintf("no agent called %q is configured", r.rec.Agent)
	}
	if r.rec.Trigger != TriggerAlert {
		r.finish(OutcomeSkipped, reason)
		return false
	}
	// An alert routed here for an agent this node does not run (the
	// bridge's configuration differs from this node's): nothing can act
	// on it here, so humans are told.
	r.finish(OutcomeUnroutable, reason)
	r.escalate(reason)
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
