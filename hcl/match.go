package hcl

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/prometheus/alertmanager/matcher/parse"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/zclconf/go-cty/cty"
)

// matchCond is one precompiled condition of a runbook: label equality from
// the match block or one Alertmanager matcher. The reasons are built at load
// time so that Match, which explains every runbook it skips, allocates
// nothing per skipped runbook.
type matchCond struct {
	label   string
	value   string          // equality, when matcher is nil
	matcher *labels.Matcher // Alertmanager matcher
	reason  string          // why it does not hold
	skip    string          // `runbook "NAME": ` + reason
}

func (m *matchCond) holds(lbls map[string]string) bool {
	if m.matcher != nil {
		return m.matcher.Matches(lbls[m.label])
	}
	return lbls[m.label] == m.value
}

// compile precomputes the runbook's conditions; the loader calls it once.
func (r *Runbook) compile() {
	r.conds = r.buildConds()
	r.compiled = true
}

// conditions returns the precompiled conditions, or builds them for a
// runbook that was constructed by hand rather than loaded.
func (r *Runbook) conditions() []matchCond {
	if r.compiled {
		return r.conds
	}
	return r.buildConds()
}

// buildConds orders equality before matchers and alertname first, because
// alertname is the cheapest test that rejects most runbooks.
func (r *Runbook) buildConds() []matchCond {
	keys := make([]string, 0, len(r.Match))
	for k := range r.Match {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == "alertname") != (keys[j] == "alertname") {
			return keys[i] == "alertname"
		}
		return keys[i] < keys[j]
	})
	conds := make([]matchCond, 0, len(keys)+len(r.Matchers))
	for _, k := range keys {
		reason := fmt.Sprintf("label %s is not %q", k, r.Match[k])
		conds = append(conds, matchCond{label: k, value: r.Match[k], reason: reason})
	}
	for _, m := range r.Matchers {
		reason := fmt.Sprintf("matcher %s does not hold", m)
		conds = append(conds, matchCond{label: m.Name, matcher: m, reason: reason})
	}
	for i := range conds {
		conds[i].skip = fmt.Sprintf("runbook %q: %s", r.Name, conds[i].reason)
	}
	return conds
}

// Matches reports whether the runbook's match and matchers all hold for the
// labels; when not, reason names the first condition that failed.
func (r *Runbook) Matches(lbls map[string]string) (ok bool, reason string) {
	conds := r.conditions()
	for i := range conds {
		if !conds[i].holds(lbls) {
			return false, conds[i].reason
		}
	}
	return true, ""
}

// Match returns the first runbook (in load order) that matches the alert's
// labels, and for every runbook before it a reason why it did not match.
func (c *Config) Match(alert Alert) (rb *Runbook, skipped []string) {
	for _, r := range c.Runbooks {
		conds := r.conditions()
		failed := -1
		for i := range conds {
			if !conds[i].holds(alert.Labels) {
				failed = i
				break
			}
		}
		if failed < 0 {
			return r, skipped
		}
		if skipped == nil {
			skipped = make([]string, 0, len(c.Runbooks))
		}
		skipped = append(skipped, conds[failed].skip)
	}
	return nil, skipped
}

// TargetAgent evaluates the runbook's agent expression (default
// alert.labels.agent) for the alert.
func (r *Runbook) TargetAgent(alert Alert) (string, error) {
	if r.AgentExpr == nil {
		name, ok := alert.Labels["agent"]
		if !ok || name == "" {
			return "", errors.New(`the alert has no "agent" label`)
		}
		return name, nil
	}
	return evalString(r.AgentExpr, alertContext(alert), "agent")
}

// PoolName evaluates the switchover's pool expression (default
// alert.labels.pool) for the alert.
func (s *Switchover) PoolName(alert Alert) (string, error) {
	if s.Pool == nil {
		name, ok := alert.Labels["pool"]
		if !ok || name == "" {
			return "", errors.New(`the alert has no "pool" label`)
		}
		return name, nil
	}
	return evalString(s.Pool, alertContext(alert), "pool")
}

// Eval evaluates the cause's `when` condition to a bool.
func (c *Cause) Eval(ctx *hcl2.EvalContext) (bool, hcl2.Diagnostics) {
	if c.When == nil {
		return false, hcl2.Diagnostics{{Severity: hcl2.DiagError, Summary: "Missing condition", Detail: fmt.Sprintf("Cause %q has no when condition.", c.Name), Subject: c.DeclRange.Ptr()}}
	}
	val, diags := c.When.Value(ctx)
	if diags.HasErrors() {
		return false, diags
	}
	if !val.IsKnown() || val.IsNull() {
		return false, append(diags, exprDiag(c.When, "Invalid condition value", fmt.Sprintf("The condition of cause %q has no value.", c.Name)))
	}
	b, err := convertTo(val, cty.Bool)
	if err != nil || !b.IsKnown() || b.IsNull() {
		return false, append(diags, exprDiag(c.When, "Invalid condition value",
			fmt.Sprintf("The condition of cause %q must be a bool, not a %s.", c.Name, val.Type().FriendlyName())))
	}
	return b.True(), diags
}

// DeviceURLFor renders the pool's device_url template for one device.
func (p *Pool) DeviceURLFor(device string) (string, error) {
	if p.DeviceURL == nil {
		return "", fmt.Errorf("pool %q has no device_url", p.Name)
	}
	ctx := &hcl2.EvalContext{Variables: map[string]cty.Value{rootDevice: cty.StringVal(device)}, Functions: functions}
	return evalString(p.DeviceURL, ctx, "device_url")
}

func evalString(expr hcl2.Expression, ctx *hcl2.EvalContext, what string) (string, error) {
	val, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return "", diagsError(diags)
	}
	if !val.IsWhollyKnown() || val.IsNull() {
		return "", fmt.Errorf("%s has no value", what)
	}
	s, err := convertTo(val, cty.String)
	if err != nil {
		return "", fmt.Errorf("%s must be a string, not a %s", what, val.Type().FriendlyName())
	}
	if s.AsString() == "" {
		return "", fmt.Errorf("%s is empty", what)
	}
	return s.AsString(), nil
}

// diagsError turns error diagnostics into one error naming their positions.
func diagsError(diags hcl2.Diagnostics) error {
	var msgs []string
	for _, d := range diags {
		if d.Severity != hcl2.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			msg = fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, msg)
		}
		msgs = append(msgs, msg)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// parseMatchers parses one matchers string the way Alertmanager does: the
// UTF-8 parser first, the classic one as a fallback, with a warning naming
// the forward-compatible spelling.
func parseMatchers(s string) (ms labels.Matchers, warn string, err error) {
	ms, err = parse.Matchers(s)
	if err == nil {
		return ms, "", nil
	}
	classic, cerr := labels.ParseMatchers(s)
	if cerr != nil {
		return nil, "", err
	}
	var sb strings.Builder
	for i, m := range classic {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(m.String())
	}
	return classic, fmt.Sprintf("Alertmanager is moving to a stricter matcher parser; write %q instead (%v).", sb.String(), err), nil
}
