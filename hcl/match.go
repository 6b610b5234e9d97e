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

	"github.com/medicops/medic/alert"
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
	return m.holdsValue(lbls[m.label])
}

// holdsValue tests the condition on the value of its label ("" when the
// alert lacks it, as in Alertmanager).
func (m *matchCond) holdsValue(v string) bool {
	if m.matcher != nil {
		return m.matcher.Matches(v)
	}
	return v == m.value
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
		if m.Type == labels.MatchEqual {
			// An equality matcher is tested like a match label, so that
			// alertname="X" can be indexed whichever way it was written.
			conds = append(conds, matchCond{label: m.Name, value: m.Value, reason: reason})
			continue
		}
		conds = append(conds, matchCond{label: m.Name, matcher: m, reason: reason})
	}
	// The alertname equality, if any, goes first: it rejects most runbooks
	// and it is what the Config's index looks runbooks up by.
	for i := range conds {
		if conds[i].label == "alertname" && conds[i].matcher == nil {
			first := conds[i]
			copy(conds[1:i+1], conds[:i])
			conds[0] = first
			break
		}
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

// matchIndex finds the runbooks an alert can match without testing the
// ones that require another alertname. Built by the loader.
type matchIndex struct {
	// byName lists, per alertname, the runbooks whose first condition is
	// alertname equal to it; other lists every runbook without such a
	// condition. Both hold runbook positions in load order.
	byName map[string][]int
	other  []int
	// firstSkip[i] is why runbook i is skipped when its alertname
	// condition fails (unused for runbooks in other).
	firstSkip []string
}

func buildMatchIndex(rbs []*Runbook) *matchIndex {
	idx := &matchIndex{byName: map[string][]int{}, firstSkip: make([]string, len(rbs))}
	for i, r := range rbs {
		conds := r.conditions()
		if len(conds) > 0 && conds[0].label == "alertname" && conds[0].matcher == nil {
			idx.byName[conds[0].value] = append(idx.byName[conds[0].value], i)
			idx.firstSkip[i] = conds[0].skip
			continue
		}
		idx.other = append(idx.other, i)
	}
	return idx
}

// matchIndexed is Match through the index: only candidate runbooks are
// tested; the reasons of the others are the precomputed alertname ones.
func (c *Config) matchIndexed(alert alert.Alert) (*Runbook, []string) {
	idx := c.matchIdx
	named, other := idx.byName[alert.Labels["alertname"]], idx.other
	type failure struct {
		at     int
		reason string
	}
	var failures []failure
	found := -1
	for len(named) > 0 || len(other) > 0 {
		var i int
		if len(other) == 0 || (len(named) > 0 && named[0] < other[0]) {
			i, named = named[0], named[1:]
		} else {
			i, other = other[0], other[1:]
		}
		if reason, ok := c.Runbooks[i].firstFailure(alert.Labels); ok {
			failures = append(failures, failure{i, reason})
			continue
		}
		found = i
		break
	}
	n := found
	if found < 0 {
		n = len(c.Runbooks)
	}
	var skipped []string
	switch {
	case n == 0:
	case len(failures) == 0:
		// Every runbook before the match was rejected by its alertname:
		// share the precomputed reasons (capacity-limited, so an append by
		// the caller copies) instead of copying a thousand strings per alert.
		skipped = idx.firstSkip[:n:n]
	default:
		skipped = make([]string, n)
		copy(skipped, idx.firstSkip[:n])
		for _, f := range failures {
			skipped[f.at] = f.reason
		}
	}
	if found < 0 {
		return nil, skipped
	}
	return c.Runbooks[found], skipped
}

// firstFailure returns the skip reason of the first condition that does not
// hold.
func (r *Runbook) firstFailure(lbls map[string]string) (string, bool) {
	conds := r.conditions()
	for i := range conds {
		if !conds[i].holds(lbls) {
			return conds[i].skip, true
		}
	}
	return "", false
}

// Match returns the first runbook (in load order) that matches the alert's
// labels, and for every runbook before it a reason why it did not match.
// The skipped slice may be shared between calls: read it, do not modify it.
func (c *Config) Match(alert alert.Alert) (rb *Runbook, skipped []string) {
	if c.matchIdx != nil {
		return c.matchIndexed(alert)
	}
	// Most runbooks test alertname first; remember the last label looked up
	// so that 1000 runbooks cost one map lookup, not 1000.
	lastLabel, lastValue := "", ""
	if alert.Labels != nil {
		lastLabel, lastValue = "alertname", alert.Labels["alertname"]
	}
	for _, r := range c.Runbooks {
		conds := r.conditions()
		failed := -1
		for i := range conds {
			m := &conds[i]
			if m.label != lastLabel {
				lastLabel, lastValue = m.label, alert.Labels[m.label]
			}
			if !m.holdsValue(lastValue) {
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
func (r *Runbook) TargetAgent(alert alert.Alert) (string, error) {
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
func (s *Switchover) PoolName(alert alert.Alert) (string, error) {
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
// A device ID is data, never URL syntax: the template sees it escaped
// (EscapeDevice), whatever position it puts it in, and where the template
// puts it in the host, an ID that is not one DNS label is refused
// (CheckDevice), so that no ID can aim the agent at another host or path.
func (p *Pool) DeviceURLFor(device string) (string, error) {
	if p.DeviceURL == nil {
		return "", fmt.Errorf("pool %q has no device_url", p.Name)
	}
	if err := p.CheckDevice(device); err != nil {
		return "", err
	}
	return p.renderDeviceURL(EscapeDevice(device))
}

func (p *Pool) renderDeviceURL(device string) (string, error) {
	ctx := &hcl2.EvalContext{Variables: map[string]cty.Value{rootDevice: cty.StringVal(device)}, Functions: functions}
	return evalString(p.DeviceURL, ctx, "device_url")
}

// DeviceInHost says whether the pool's device_url puts the device in the
// URL's host (http://${device}.switches.example/...).
func (p *Pool) DeviceInHost() bool { return p.deviceInHost }

// CheckDevice refuses a device ID the pool cannot address: where the
// device_url puts the device in the host, anything but one DNS label
// (letters, digits and inner hyphens, at most 63). The bridge calls it
// at publish (400), the agent before each push.
func (p *Pool) CheckDevice(device string) error {
	if p.deviceInHost && !IsDNSLabel(device) {
		return fmt.Errorf("device %q: pool %q puts the device in the URL's host, so a device ID must be one DNS label (letters, digits and inner hyphens, at most 63 characters)", device, p.Name)
	}
	return nil
}

// IsDNSLabel: 1-63 ASCII letters, digits and hyphens, neither first nor
// last a hyphen (RFC 1123).
func IsDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// EscapeDevice percent-encodes every byte of a device ID but RFC 3986's
// unreserved characters (letters, digits, - . _ ~), so that the ID is
// one inert segment wherever a template puts it: no '/', '?', '#', '@',
// ':', '&' or '=' survives. The IDs "." and ".." are escaped whole
// (%2E), so that no path resolves them as dot segments.
func EscapeDevice(device string) string {
	if device == "." || device == ".." {
		return strings.Repeat("%2E", len(device))
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(device); i++ {
		c := device[i]
		if c == '-' || c == '.' || c == '_' || c == '~' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
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
