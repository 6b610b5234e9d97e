package hcl

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/prometheus/common/model"
	"github.com/zclconf/go-cty/cty"

	"github.com/medicops/medic/alert"
)

// The "safe at 3 a.m." part of a runbook: mode, approval, fleet-wide
// concurrency, circuit breaker, silence and redaction.

var (
	concurrencySchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{
		{Name: "max"}, {Name: "max_ratio"}, {Name: "key"}, {Name: "wait"}, {Name: "queue"},
	}}
	circuitSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{
		{Name: "max_runs", Required: true}, {Name: "window", Required: true},
	}}
	silenceSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{
		{Name: "alertmanager", Required: true}, {Name: "duration"}, {Name: "timeout"},
	}}
)

var modes = []string{ModeApprove, ModeAuto, ModeShadow}

func decodeSafety(rb *Runbook, attrs hcl2.Attributes, blocks hcl2.Blocks) hcl2.Diagnostics {
	var diags hcl2.Diagnostics
	rb.Mode = ModeAuto
	rb.ApprovalTTL = DefaultApprovalTTL
	if attr, ok := attrs["mode"]; ok {
		if m, d := decodeString(attr); d.HasErrors() {
			diags = append(diags, d...)
		} else if !slices.Contains(modes, m) {
			detail := fmt.Sprintf("%q is not a mode; use one of %s.", m, englishList(modes))
			if s := suggest(m, modes); s != "" {
				detail = fmt.Sprintf("%q is not a mode. Did you mean %q?", m, s)
			}
			diags = append(diags, attrDiag(attr, "Invalid mode", detail))
		} else {
			rb.Mode = m
		}
	}
	if attr, ok := attrs["approval_ttl"]; ok {
		decodeAttr(&diags, attrs, "approval_ttl", &rb.ApprovalTTL, decodeDuration)
		if rb.Mode != ModeApprove && !diags.HasErrors() {
			diags = append(diags, &hcl2.Diagnostic{
				Severity: hcl2.DiagWarning,
				Summary:  "approval_ttl without approve mode",
				Detail:   fmt.Sprintf("Runbook %q runs in mode %q, which never waits for an approval; approval_ttl has no effect.", rb.Name, rb.Mode),
				Subject:  attr.Expr.Range().Ptr(),
			})
		}
	}
	if attr, ok := attrs["redact"]; ok {
		rb.Redact, diags = decodeRedact(attr, diags)
	}
	if b := singleBlock(&diags, blocks, "concurrency"); b != nil {
		c, d := decodeConcurrency(b)
		diags = append(diags, d...)
		rb.Concurrency = c
	}
	if b := singleBlock(&diags, blocks, "circuit"); b != nil {
		c, d := decodeCircuit(b)
		diags = append(diags, d...)
		rb.Circuit = c
	}
	if b := singleBlock(&diags, blocks, "silence"); b != nil {
		s, d := decodeSilence(b)
		diags = append(diags, d...)
		rb.Silence = s
	}
	if rb.Switchover != nil && rb.Mode != ModeAuto {
		diags = append(diags, attrDiag(attrs["mode"], "Mode of a switchover runbook",
			fmt.Sprintf("Runbook %q switches a pool over, which the coordinator does at once; only recovery runbooks can run in %q mode.", rb.Name, rb.Mode)))
	}
	return diags
}

// decodeRedact compiles every pattern, each diagnostic at its element.
func decodeRedact(attr *hcl2.Attribute, diags hcl2.Diagnostics) ([]*regexp.Regexp, hcl2.Diagnostics) {
	list, d := decodeStringList(attr)
	diags = append(diags, d...)
	if d.HasErrors() {
		return nil, diags
	}
	elems, _ := hcl2.ExprList(attr.Expr)
	var out []*regexp.Regexp
	for i, s := range list {
		subject := attr.Expr.Range()
		if len(elems) == len(list) {
			subject = elems[i].Range()
		}
		var err error
		var re *regexp.Regexp
		if s == "" {
			err = fmt.Errorf("an empty pattern matches everywhere")
		} else {
			re, err = regexp.Compile(s)
		}
		if err != nil {
			diags = append(diags, &hcl2.Diagnostic{
				Severity: hcl2.DiagError,
				Summary:  "Invalid regular expression",
				Detail:   fmt.Sprintf("redact[%d] %q: %v.", i, s, err),
				Subject:  subject.Ptr(),
				Context:  attr.Range.Ptr(),
			})
			continue
		}
		out = append(out, re)
	}
	return out, diags
}

func decodeConcurrency(block *hcl2.Block) (*Concurrency, hcl2.Diagnostics) {
	content, diags := block.Body.Content(concurrencySchema)
	c := &Concurrency{Wait: DefaultConcurrencyWait, Queue: DefaultConcurrencyQueue}
	attrs := content.Attributes
	hasMax := decodeAttr(&diags, attrs, "max", &c.Max, intIn(1, 1000000))
	hasRatio := decodeAttr(&diags, attrs, "max_ratio", &c.MaxRatio, decodeRatio)
	if attr, ok := attrs["max_ratio"]; ok && hasRatio && !diags.HasErrors() && c.MaxRatio == 0 {
		diags = append(diags, attrDiag(attr, "Ratio out of range", "max_ratio must be larger than 0: a ratio of 0 would never let a run act."))
	}
	if attr, ok := attrs["key"]; ok {
		diags = append(diags, scopeAlert.checkExpr(attr.Expr, cty.String, "key")...)
		c.Key = attr.Expr
	}
	decodeAttr(&diags, attrs, "wait", &c.Wait, decodeDuration)
	decodeAttr(&diags, attrs, "queue", &c.Queue, intIn(0, 100000))
	if !hasMax && !hasRatio {
		diags = append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  "Concurrency without a limit",
			Detail:   "A concurrency block needs max = N and/or max_ratio = 0.1.",
			Subject:  block.DefRange.Ptr(),
		})
	}
	return c, diags
}

func decodeCircuit(block *hcl2.Block) (*Circuit, hcl2.Diagnostics) {
	content, diags := block.Body.Content(circuitSchema)
	c := &Circuit{}
	decodeAttr(&diags, content.Attributes, "max_runs", &c.MaxRuns, intIn(1, 1000000))
	decodeAttr(&diags, content.Attributes, "window", &c.Window, decodeDuration)
	return c, diags
}

func decodeSilence(block *hcl2.Block) (*Silence, hcl2.Diagnostics) {
	content, diags := block.Body.Content(silenceSchema)
	s := &Silence{Duration: DefaultSilenceDuration, Timeout: DefaultSilenceTimeout}
	decodeAttr(&diags, content.Attributes, "alertmanager", &s.Alertmanager, decodeURL)
	decodeAttr(&diags, content.Attributes, "duration", &s.Duration, decodeDuration)
	decodeAttr(&diags, content.Attributes, "timeout", &s.Timeout, decodeDuration)
	return s, diags
}

// checkAgentLabels reports agent label names that are not Prometheus
// label names: they stand in for alert labels.
func checkAgentLabels(attr *hcl2.Attribute, lbls map[string]string) hcl2.Diagnostics {
	var diags hcl2.Diagnostics
	keys := make([]string, 0, len(lbls))
	for k := range lbls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !model.LegacyValidation.IsValidLabelName(k) {
			d := attrDiag(attr, "Invalid label name", fmt.Sprintf("%q is not a Prometheus label name (letters, digits and '_').", k))
			d.Subject = mapKeyRange(attr.Expr, k, d.Subject)
			diags = append(diags, d)
		}
	}
	return diags
}

// AllKeys is the concurrency key value of a runbook without a key.
const AllKeys = "*"

// KeyFor evaluates the runbook's concurrency key for the alert;
// AllKeys when the block has no key.
func (c *Concurrency) KeyFor(alert alert.Alert) (string, error) {
	if c.Key == nil {
		return AllKeys, nil
	}
	return evalString(c.Key, alertContext(alert), "concurrency key")
}

// AgentAlert is the alert an agent stands for when a fleet-wide limit
// counts agents: its labels plus agent and node.
func AgentAlert(a *Agent) alert.Alert {
	l := make(map[string]string, len(a.Labels)+2)
	for k, v := range a.Labels {
		l[k] = v
	}
	l["agent"] = a.Name
	if a.Node != "" {
		l["node"] = a.Node
	}
	return alert.Alert{Labels: l, Status: "firing"}
}

// agentsByKey counts the configured agents by the value of rb's
// concurrency key (evaluated on AgentAlert; an agent whose key does not
// evaluate counts for none), once per Config.
func (c *Config) agentsByKey(rb *Runbook) map[string]int {
	if m, ok := c.keyCounts.Load(rb); ok {
		return m.(map[string]int)
	}
	m := map[string]int{}
	for _, a := range c.Agents {
		if k, err := rb.Concurrency.KeyFor(AgentAlert(a)); err == nil {
			m[k]++
		}
	}
	actual, _ := c.keyCounts.LoadOrStore(rb, m)
	return actual.(map[string]int)
}

// ConcurrencyLimit is the key value and the number of runs of rb allowed
// at once for the alert: Max, or MaxRatio of the configured agents whose
// key (evaluated on AgentAlert) has the same value, at least 1, whichever
// is smaller. agents is how many agents matched the key.
func (c *Config) ConcurrencyLimit(rb *Runbook, alert alert.Alert) (key string, limit, agents int, err error) {
	cc := rb.Concurrency
	if cc == nil {
		return "", 0, 0, nil
	}
	key, err = cc.KeyFor(alert)
	if err != nil {
		return "", 0, 0, err
	}
	limit = cc.Max
	if cc.MaxRatio > 0 {
		agents = c.agentsByKey(rb)[key]
		byRatio := max(int(math.Floor(cc.MaxRatio*float64(agents))), 1)
		if limit == 0 || byRatio < limit {
			limit = byRatio
		}
	}
	return key, limit, agents, nil
}
