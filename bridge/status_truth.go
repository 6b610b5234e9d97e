package bridge

import (
	"fmt"
	"strings"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/runbooks"
)

// The status page says what happened, and only that: a shadow run's
// steps did not run, a pending approval says what approving will do and
// why it is asked.

// badge is one step's pill.
type badge struct{ Class, Text, Title string }

// stepBadge is a step's pill: ok or fail for what ran; a neutral "would
// run" for what a shadow run only recorded (its steps are "ok" in the
// record, and a green ok would say they ran).
func stepBadge(rec *runbooks.RunRecord, s runbooks.Step) badge {
	if rec != nil && rec.Outcome == runbooks.OutcomeShadowed && strings.HasPrefix(s.Detail, "would ") {
		return badge{"would", "would run", "shadow mode: recorded, not executed"}
	}
	if s.OK {
		return badge{"ok", "ok", ""}
	}
	return badge{"bad", "fail", ""}
}

// PlanFor is what approving rec will do (StatusOptions.Plan), nil when
// the page has no plan function.
func (d statusData) PlanFor(rec *runbooks.RunRecord) []string {
	if d.plan == nil || rec == nil {
		return nil
	}
	return d.plan(rec)
}

// PlannedSteps is what approving rec will do under cfg: each diagnosed
// cause's repair script, the restart, the verification; nil when the
// runbook is not configured (any more).
func PlannedSteps(cfg *hcl.Config, rec *runbooks.RunRecord) []string {
	if cfg == nil || rec == nil {
		return nil
	}
	var rb *hcl.Runbook
	for _, r := range cfg.Runbooks {
		if r.Name == rec.Runbook {
			rb = r
		}
	}
	if rb == nil {
		return nil
	}
	if rb.Switchover != nil {
		return []string{"switch the pool away from " + rec.Agent}
	}
	var out []string
	for _, name := range rec.Causes {
		for _, c := range rb.Causes {
			if c.Name != name {
				continue
			}
			if len(c.Repair) > 0 {
				out = append(out, fmt.Sprintf("repair %s: run %s", c.Name, hcl.ArgvText(c.Repair)))
			} else {
				out = append(out, fmt.Sprintf("repair %s: no script (restart only)", c.Name))
			}
		}
	}
	out = append(out, "restart "+rec.Agent)
	out = append(out, fmt.Sprintf("verify with the probe, up to %d times", max(rb.Verify.Attempts, 1)))
	if rb.Escalate != nil {
		out = append(out, "escalate if it is still unhealthy")
	}
	return out
}
