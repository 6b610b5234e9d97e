package runbooks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/hcl"
)

// The "safe at 3 a.m." gates of a run: pause, shadow and approve modes,
// the circuit breaker, the fleet-wide concurrency slot and the silence.
// With Options.Controls they hold across every process sharing the Redis;
// without (medic run), the circuit and the concurrency limit hold within
// this process, pauses and approvals cannot exist.

// DefaultApprovalPoll is how often a run waiting for approval looks for a
// decision.
const DefaultApprovalPoll = time.Second

func (r *run) mode() string {
	if r.rb.Mode == "" {
		return hcl.ModeAuto
	}
	return r.rb.Mode
}

// paused ends the run when an operator paused its runbook or all of them.
// A pause that cannot be read (Redis down) does not stop remediation.
func (r *run) paused() bool {
	c := r.e.opts.Controls
	if c == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
	defer cancel()
	p, err := c.Paused(ctx, r.rb.Name, r.e.opts.Now())
	if err != nil {
		s := r.step("pause")
		r.done(s, false, "pause state unavailable; going on", err)
		r.log.Warn("pause state unavailable; going on", "err", err)
		return false
	}
	if p == nil {
		return false
	}
	what := fmt.Sprintf("runbook %s is paused", r.rb.Name)
	if p.Runbook == "" {
		what = "all runbooks are paused"
	}
	if p.By != "" {
		what += " by " + p.By
	}
	if !p.Until.IsZero() {
		what += " until " + p.Until.UTC().Format(time.RFC3339)
	}
	if p.Reason != "" {
		what += ": " + p.Reason
	}
	s := r.step("pause")
	r.done(s, false, what, nil)
	r.finish(OutcomePaused, what+"; nothing ran")
	return true
}

// gate stands between diagnosis and the first action. It returns false
// when the run is over; otherwise the (possibly re-checked) liveness and
// causes to act on.
func (r *run) gate(alive bool, causes []*hcl.Cause, why string) (bool, []*hcl.Cause, string) {
	if r.mode() == hcl.ModeShadow {
		r.shadow(alive, causes, why)
		return false, nil, ""
	}
	approve := r.mode() == hcl.ModeApprove
	// An approve-mode run asks the circuit before it waits for a person,
	// and counts against it only once approved: a rejected or expired run
	// never acted.
	if !r.circuit(approve) {
		return false, nil, ""
	}
	if approve {
		var ok bool
		wasAlive := alive
		if ok, alive, causes = r.approve(alive, causes); !ok {
			return false, nil, ""
		}
		if !r.circuit(false) {
			return false, nil, ""
		}
		switch {
		case !alive:
			why = "agent is not running"
		case !wasAlive:
			// It came back while waiting, but its probe fails; it was
			// never diagnosed.
			why = "probe failed after approval: restart alone"
		}
	}
	r.silence()
	waited, ok := r.slot()
	if !ok {
		return false, nil, ""
	}
	// An operator may have paused while the run waited for a decision or
	// a slot: a paused runbook acts no more, whenever its runs started.
	if (r.mode() == hcl.ModeApprove || waited > 0) && r.paused() {
		return false, nil, ""
	}
	return true, causes, why
}

// shadow records what the run would do and does none of it.
func (r *run) shadow(alive bool, causes []*hcl.Cause, why string) {
	for _, c := range causes {
		s := r.step("repair:" + c.Name)
		detail := "would run no repair script: restart only (shadow mode)"
		if len(c.Repair) > 0 {
			detail = "would run " + hcl.ArgvText(c.Repair) + " (shadow mode)"
		}
		r.done(s, true, detail, nil)
	}
	s := r.step("restart")
	r.done(s, true, "would restart the agent ("+why+") (shadow mode)", nil)
	s = r.step("verify")
	r.done(s, true, fmt.Sprintf("would verify with the probe up to %d times (shadow mode)", max(r.rb.Verify.Attempts, 1)), nil)
	did := "would restart"
	if len(r.rec.Causes) > 0 {
		did = "would repair " + strings.Join(r.rec.Causes, ", ") + " and restart"
	}
	if !alive {
		did = "agent is not running: would restart"
	}
	r.finish(OutcomeShadowed, "shadow mode: "+did+"; nothing was executed")
}

// circuit counts the run against the agent's circuit; false (outcome
// circuit_open, escalated) when it is open. Only runs that would act are
// counted: a probe that passes is not a remediation.
func (r *run) circuit(peek bool) bool {
	cb := r.rb.Circuit
	if cb == nil {
		return true
	}
	now := r.e.opts.Now()
	var open bool
	var until time.Time
	var err error
	if c := r.e.opts.Controls; c != nil {
		ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
		if peek {
			open, until, err = c.CircuitPeek(ctx, r.e.opts.Node, r.rec.Agent, cb.MaxRuns, cb.Window, now)
		} else {
			open, until, err = c.Circuit(ctx, r.e.opts.Node, r.rec.Agent, cb.MaxRuns, cb.Window, now, r.rec.ID)
		}
		cancel()
	}
	if r.e.opts.Controls == nil || err != nil {
		if err != nil {
			s := r.step("circuit")
			r.done(s, false, "shared circuit state unavailable; counting in this process only", err)
		}
		open, until = r.e.circuits.count(r.e.opts.Node+"/"+r.rec.Agent, cb.MaxRuns, cb.Window, now, peek)
	}
	if !open {
		return true
	}
	reason := fmt.Sprintf("circuit open: %d runs for agent %s within %s; closes at %s or when an operator resets the agent",
		cb.MaxRuns, r.rec.Agent, controls.ShortDuration(cb.Window), until.UTC().Format(time.RFC3339))
	s := r.step("circuit")
	r.done(s, false, reason, nil)
	r.finish(OutcomeCircuitOpen, reason)
	r.escalate(reason)
	return false
}

// controlsRetryFor bounds how long a run retries a request to the shared
// controls that failed (Redis restarting) before it gives up.
const controlsRetryFor = 30 * time.Second

// approve stores the pending record, waits for a decision and, when
// approved, checks the agent again: it may have recovered meanwhile.
func (r *run) approve(alive bool, causes []*hcl.Cause) (ok, stillAlive bool, stillCauses []*hcl.Cause) {
	c := r.e.opts.Controls
	if c == nil {
		r.fail(errors.New("approve mode needs the shared controls in Redis (--redis.url); nobody can approve this run"))
		return false, false, nil
	}
	ttl := r.rb.ApprovalTTL
	if ttl <= 0 {
		ttl = hcl.DefaultApprovalTTL
	}
	s := r.step("approval")
	now := r.e.opts.Now()
	// Redis restarting is the usual reason a request fails: try again for
	// a while before giving up (and escalating, see fail).
	var deadline time.Time
	var again bool
	var err error
	for wait, giveUp := 250*time.Millisecond, now.Add(controlsRetryFor); ; wait = min(2*wait, 5*time.Second) {
		ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
		deadline, again, err = c.Ask(ctx, r.rec.ID, now.Add(ttl), now)
		cancel()
		if err == nil || r.ctx.Err() != nil || r.e.opts.Now().Add(wait).After(giveUp) {
			break
		}
		r.log.Warn("register for approval failed; retrying", "err", err, "in", wait)
		if r.e.opts.Sleep(r.ctx, wait) != nil {
			break
		}
	}
	if err != nil {
		r.done(s, false, "could not register the run for approval", err)
		r.fail(fmt.Errorf("register for approval: %w", err))
		return false, false, nil
	}
	if again {
		// Its node stopped while it waited: the wait goes on, with the
		// deadline of the first request and any decision made meanwhile.
		r.rec.Redelivered = RedeliveredResumed
	}
	r.progress(OutcomePendingApproval, fmt.Sprintf("waiting up to %s (until %s) for an operator to approve or reject", controls.ShortDuration(max(deadline.Sub(now), 0).Round(time.Second)), deadline.UTC().Format(time.RFC3339)))

	// Waiting is not working: the run gives its execution slot back while
	// it waits, durably parked in Redis (the job stays pending, the
	// request at asked:ID), and takes one again once decided.
	unpark := r.park()
	wctx, wcancel := context.WithDeadline(r.ctx, r.deadlineFor(deadline))
	d, _ := c.WaitDecision(wctx, r.rec.ID, r.e.opts.ApprovalPoll)
	wcancel()
	unpark()
	if d == nil && r.ctx.Err() == nil {
		// Either the decision landed at the last moment or the run stops
		// being pending, atomically: a late Decide gets ErrNotPending. A
		// run cancelled by its node's shutdown stays pending: it is handed
		// back and resumes its wait on the next start.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 5*time.Second)
		d, err = c.Withdraw(ctx, r.rec.ID)
		cancel()
		if err != nil {
			r.log.Warn("could not withdraw the approval request; it expires by itself", "err", err)
		}
	}
	if d == nil {
		if r.ctx.Err() != nil {
			r.done(s, false, "cancelled while waiting for approval", r.ctx.Err())
			r.cancelled()
			return false, false, nil
		}
		reason := fmt.Sprintf("no operator approved or rejected the run within approval_ttl %s; nothing acted", controls.ShortDuration(ttl))
		r.done(s, false, reason, nil)
		r.finish(OutcomeExpired, reason)
		return false, false, nil
	}
	by := d.By
	if by == "" {
		by = "an operator"
	}
	verdict := "approved by " + by
	if !d.Approve {
		verdict = "rejected by " + by
	}
	if d.Reason != "" {
		verdict += ": " + d.Reason
	}
	if !d.Approve {
		r.done(s, false, verdict, nil)
		r.finish(OutcomeRejected, verdict+"; nothing acted")
		return false, false, nil
	}
	r.done(s, true, verdict, nil)
	// Minutes may have passed: act only on what is still broken.
	alive, ok = r.liveness()
	if !ok {
		return false, false, nil
	}
	if !alive {
		return true, false, nil
	}
	pass, ok := r.probe("probe")
	if !ok || r.cancelled() {
		return false, false, nil
	}
	if pass {
		r.finish(OutcomeHealthy, verdict+", but the agent was healthy again by then: nothing touched")
		return false, false, nil
	}
	return true, true, causes
}

// progress hands a snapshot with a provisional outcome to Request.Progress
// and Options.Progress.
func (r *run) progress(state, reason string) {
	if r.req.Progress == nil && r.e.opts.Progress == nil {
		return
	}
	snap := *r.rec
	snap.Steps = append([]Step(nil), r.rec.Steps...)
	snap.Outcome, snap.Reason = state, r.redact(reason)
	if r.req.Progress != nil {
		cp := snap
		r.req.Progress(&cp)
	}
	if r.e.opts.Progress != nil {
		cp := snap
		r.e.opts.Progress(&cp)
	}
}

// slot takes a fleet-wide concurrency slot of the runbook; false (outcome
// limited, escalated) when none freed within the wait or the queue was
// full. The slot is held until the run ends.
func (r *run) slot() (time.Duration, bool) {
	cc := r.rb.Concurrency
	if cc == nil {
		return 0, true
	}
	key, limit, _, err := r.cfg.ConcurrencyLimit(r.rb, r.req.Alert)
	if err != nil {
		r.fail(fmt.Errorf("runbook %q: concurrency key: %w", r.rb.Name, err))
		return 0, false
	}
	s := r.step("concurrency")
	// A run queued for a slot gives its execution slot back while it
	// waits (the queue is in Redis) and takes one again with the slot.
	unpark := func() {}
	l := controls.Limit{Runbook: r.rb.Name, Key: key, Max: limit, Wait: cc.Wait, Queue: cc.Queue, LeaseTTL: r.e.opts.LeaseTTL, Poll: r.e.opts.ConcurrencyPoll,
		Queued: func() { unpark = r.park() }}
	var release func()
	var waited time.Duration
	local := func() {
		release, waited, err = r.e.slots.acquire(r.ctx, l)
	}
	if c := r.e.opts.Controls; c != nil {
		var slot *controls.Slot
		slot, err = c.Acquire(r.ctx, l, r.rec.ID, nil, r.log)
		switch {
		case err == nil:
			release, waited = slot.Release, slot.Waited
		case !isLimit(err) && r.ctx.Err() == nil:
			// Redis is down: a node must still repair its agents, under
			// the limit it can enforce alone.
			r.log.Warn("shared concurrency state unavailable; limiting within this process only", "err", err)
			local()
		}
	} else {
		local()
	}
	unpark()
	if err != nil {
		if r.ctx.Err() != nil {
			r.done(s, false, "cancelled while waiting for a slot", err)
			r.cancelled()
			return 0, false
		}
		reason := fmt.Sprintf("concurrency limit of runbook %s: %d at once for %q; %v", r.rb.Name, limit, key, err)
		r.done(s, false, reason, nil)
		r.finish(OutcomeLimited, reason)
		r.escalate(reason)
		return 0, false
	}
	r.releases = append(r.releases, release)
	r.done(s, true, fmt.Sprintf("slot taken for %q (at most %d at once; waited %s)", key, limit, waited.Round(time.Millisecond)), nil)
	return waited, true
}

// park tells the caller that the run starts waiting (Request.Park) and
// returns what ends the wait.
func (r *run) park() (unpark func()) {
	if r.req.Park == nil {
		return func() {}
	}
	return sync.OnceFunc(r.req.Park())
}

// deadlineFor turns a deadline on the engine's clock into one on the
// wall clock, for a context.
func (r *run) deadlineFor(t time.Time) time.Time {
	return time.Now().Add(t.Sub(r.e.opts.Now()))
}

func isLimit(err error) bool {
	return errors.Is(err, controls.ErrQueueFull) || errors.Is(err, controls.ErrWaitTimeout)
}

// redact replaces the runbook's redact patterns in s.
func (r *run) redact(s string) string {
	if r.rb == nil || s == "" {
		return s
	}
	for _, re := range r.rb.Redact {
		s = re.ReplaceAllString(s, "[REDACTED]")
	}
	return s
}

func (r *run) redactStep(s *Step) {
	s.Output = r.redact(s.Output)
	s.Detail = r.redact(s.Detail)
	s.Error = r.redact(s.Error)
}
