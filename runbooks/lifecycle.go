package runbooks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
)

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
