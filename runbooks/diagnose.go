package runbooks

import (
	"context"
	"fmt"
	"strings"

	"github.com/medicops/medic/hcl"
)

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
