package hcl

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/zclconf/go-cty/cty"
)

// The schemas are the whole language: hclsyntax rejects anything not named
// here with "Unsupported argument" / "Unsupported block type" and a "Did you
// mean" suggestion.
var (
	rootSchema = &hcl2.BodySchema{Blocks: []hcl2.BlockHeaderSchema{
		{Type: "agent", LabelNames: []string{"name"}},
		{Type: "runbook", LabelNames: []string{"name"}},
		{Type: "pool", LabelNames: []string{"name"}},
	}}

	agentSchema = &hcl2.BodySchema{
		Attributes: []hcl2.AttributeSchema{
			{Name: "node"}, {Name: "command"}, {Name: "pidfile"}, {Name: "start"}, {Name: "stop"},
			{Name: "workdir"}, {Name: "env"}, {Name: "watchdog"}, {Name: "labels"},
		},
		Blocks: []hcl2.BlockHeaderSchema{
			{Type: "heartbeat"},
			{Type: "probe", LabelNames: []string{"kind"}},
			{Type: "thresholds"},
		},
	}
	heartbeatSchema  = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{{Name: "timeout"}}}
	thresholdsSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{{Name: "memory"}, {Name: "cpu"}, {Name: "disk"}}}

	runbookSchema = &hcl2.BodySchema{
		Attributes: []hcl2.AttributeSchema{{Name: "matchers"}, {Name: "agent"}, {Name: "mode"}, {Name: "approval_ttl"}, {Name: "redact"}},
		Blocks: []hcl2.BlockHeaderSchema{
			{Type: "concurrency"},
			{Type: "circuit"},
			{Type: "silence"},
			{Type: "match"},
			{Type: "cause", LabelNames: []string{"name"}},
			{Type: "verify"},
			{Type: "escalate"},
			{Type: "budget"},
			{Type: "switchover"},
		},
	}
	causeSchema      = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{{Name: "when", Required: true}, {Name: "repair"}, {Name: "timeout"}}}
	verifySchema     = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{{Name: "attempts"}, {Name: "interval"}}}
	escalateSchema   = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{{Name: "webhook"}, {Name: "command"}, {Name: "timeout"}, {Name: "retry_for"}}}
	budgetSchema     = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{{Name: "restarts"}, {Name: "window"}}}
	switchoverSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{{Name: "pool"}}}

	poolSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{
		{Name: "agents", Required: true}, {Name: "check_interval"}, {Name: "device_url", Required: true},
		{Name: "max_attempts"},
	}}
)

// validName keeps names usable in Redis keys (no ':' or hash-tag braces),
// metric labels, environment variables and file names.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func checkName(block *hcl2.Block) hcl2.Diagnostics {
	if len(block.Labels) == 0 || validName.MatchString(block.Labels[0]) {
		return nil
	}
	return hcl2.Diagnostics{{
		Severity: hcl2.DiagError,
		Summary:  fmt.Sprintf("Invalid %s name", block.Type),
		Detail:   fmt.Sprintf("%q is not a valid %s name: use letters, digits, '_', '.' and '-', starting with a letter or digit.", block.Labels[0], block.Type),
		Subject:  block.LabelRanges[0].Ptr(),
		Context:  block.DefRange.Ptr(),
	}}
}

// decodeAttr decodes attrs[name] into *dst when it is present, appending the
// diagnostics; it reports whether the attribute was present.
func decodeAttr[T any](diags *hcl2.Diagnostics, attrs hcl2.Attributes, name string, dst *T, fn func(*hcl2.Attribute) (T, hcl2.Diagnostics)) bool {
	attr, ok := attrs[name]
	if !ok {
		return false
	}
	v, d := fn(attr)
	*diags = append(*diags, d...)
	if !d.HasErrors() {
		*dst = v
	}
	return true
}

// singleBlock returns the first block of a type that may appear at most
// once, reporting every extra one.
func singleBlock(diags *hcl2.Diagnostics, blocks hcl2.Blocks, typ string) *hcl2.Block {
	var first *hcl2.Block
	for _, b := range blocks {
		if b.Type != typ {
			continue
		}
		if first == nil {
			first = b
			continue
		}
		*diags = append(*diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  fmt.Sprintf("Duplicate %s block", typ),
			Detail:   fmt.Sprintf("Only one %s block is allowed here; the first is at %s.", typ, posString(first.DefRange)),
			Subject:  b.DefRange.Ptr(),
		})
	}
	return first
}

func posString(r hcl2.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

func decodeAgent(block *hcl2.Block) (*Agent, hcl2.Diagnostics) {
	diags := checkName(block)
	content, d := block.Body.Content(agentSchema)
	diags = append(diags, d...)
	a := &Agent{Name: block.Labels[0], DeclRange: block.DefRange, Thresholds: DefaultThresholds()}
	attrs := content.Attributes

	decodeAttr(&diags, attrs, "node", &a.Node, decodeString)
	hasCommand := decodeAttr(&diags, attrs, "command", &a.Command, decodeArgv)
	hasPidfile := decodeAttr(&diags, attrs, "pidfile", &a.Pidfile, decodeString)
	hasStart := decodeAttr(&diags, attrs, "start", &a.Start, decodeArgv)
	decodeAttr(&diags, attrs, "stop", &a.Stop, decodeArgv)
	decodeAttr(&diags, attrs, "workdir", &a.Workdir, decodeString)
	decodeAttr(&diags, attrs, "env", &a.Env, decodeStringMap)
	if decodeAttr(&diags, attrs, "labels", &a.Labels, decodeStringMap) {
		diags = append(diags, checkAgentLabels(attrs["labels"], a.Labels)...)
	}
	hasWatchdog := decodeAttr(&diags, attrs, "watchdog", &a.Watchdog, decodeBool)

	// An unsupported or invalid argument (say, a misspelt command) would make
	// the checks below report a second, misleading error.
	switch {
	case diags.HasErrors():
	case hasCommand && hasPidfile:
		diags = append(diags, attrDiag(attrs["pidfile"], "Conflicting arguments",
			fmt.Sprintf("Agent %q has both command (medic node supervises it) and pidfile (an external supervisor does); set one of them.", a.Name)))
	case hasCommand:
		for _, n := range []string{"start", "stop"} {
			if attr, ok := attrs[n]; ok {
				diags = append(diags, attrDiag(attr, "Conflicting arguments",
					fmt.Sprintf("%s belongs to pidfile agents; agent %q is started by medic node from its command.", n, a.Name)))
			}
		}
	case hasPidfile:
		if !hasStart {
			diags = append(diags, attrDiag(attrs["pidfile"], "Missing start command",
				fmt.Sprintf("Agent %q names a pidfile, so medic needs start = [...] to restart it.", a.Name)))
		}
		if a.Pidfile != "" && !path.IsAbs(a.Pidfile) {
			diags = append(diags, attrDiag(attrs["pidfile"], "Relative path", "pidfile must be an absolute path."))
		}
	default:
		diags = append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  "Missing command or pidfile",
			Detail:   fmt.Sprintf("Agent %q needs either command = [...] (medic node supervises it) or pidfile and start (an external supervisor does).", a.Name),
			Subject:  block.DefRange.Ptr(),
		})
	}
	if !hasWatchdog {
		a.Watchdog = hasCommand
	}
	if attr, ok := attrs["workdir"]; ok && a.Workdir != "" && !path.IsAbs(a.Workdir) {
		diags = append(diags, attrDiag(attr, "Relative path", "workdir must be an absolute path; its file system's disk ratio is measured."))
	}
	if attr, ok := attrs["env"]; ok {
		keys := make([]string, 0, len(a.Env))
		for k := range a.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !envName.MatchString(k) {
				d := attrDiag(attr, "Invalid environment variable name",
					fmt.Sprintf("%q is not a valid environment variable name: use letters, digits and '_', not starting with a digit.", k))
				d.Subject = mapKeyRange(attr.Expr, k, d.Subject)
				diags = append(diags, d)
			}
		}
	}

	if b := singleBlock(&diags, content.Blocks, "heartbeat"); b != nil {
		hb, d := decodeHeartbeat(b)
		diags = append(diags, d...)
		a.Heartbeat = hb
	}
	if b := singleBlock(&diags, content.Blocks, "probe"); b != nil {
		p, d := decodeProbe(b)
		diags = append(diags, d...)
		a.Probe = p
	}
	if b := singleBlock(&diags, content.Blocks, "thresholds"); b != nil {
		diags = append(diags, decodeThresholds(b, &a.Thresholds)...)
	}
	return a, diags
}

func decodeHeartbeat(block *hcl2.Block) (*Heartbeat, hcl2.Diagnostics) {
	content, diags := block.Body.Content(heartbeatSchema)
	hb := &Heartbeat{Timeout: DefaultHeartbeatTimeout}
	decodeAttr(&diags, content.Attributes, "timeout", &hb.Timeout, decodeDuration)
	return hb, diags
}

// decodeURL decodes an absolute http(s) URL.
func decodeURL(attr *hcl2.Attribute) (string, hcl2.Diagnostics) {
	s, diags := decodeString(attr)
	if diags.HasErrors() {
		return "", diags
	}
	if err := checkHTTPURL(s); err != nil {
		return "", append(diags, attrDiag(attr, "Invalid URL", err.Error()))
	}
	return s, diags
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v.", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be an absolute http:// or https:// URL.", s)
	}
	return nil
}

func decodeThresholds(block *hcl2.Block, t *Thresholds) hcl2.Diagnostics {
	content, diags := block.Body.Content(thresholdsSchema)
	decodeAttr(&diags, content.Attributes, "memory", &t.Memory, decodeRatio)
	decodeAttr(&diags, content.Attributes, "cpu", &t.CPU, decodeRatio)
	decodeAttr(&diags, content.Attributes, "disk", &t.Disk, decodeRatio)
	return diags
}

func decodeRunbook(block *hcl2.Block) (*Runbook, hcl2.Diagnostics) {
	diags := checkName(block)
	content, d := block.Body.Content(runbookSchema)
	diags = append(diags, d...)
	rb := &Runbook{
		Name:      block.Labels[0],
		Verify:    Verify{Attempts: DefaultVerifyAttempts, Interval: DefaultVerifyInterval},
		Budget:    Budget{Restarts: DefaultBudgetRestarts, Window: DefaultBudgetWindow},
		DeclRange: block.DefRange,
	}
	attrs := content.Attributes

	if b := singleBlock(&diags, content.Blocks, "match"); b != nil {
		m, d := decodeMatch(b)
		diags = append(diags, d...)
		rb.Match = m
	}
	if attr, ok := attrs["matchers"]; ok {
		ms, d := decodeMatchers(attr)
		diags = append(diags, d...)
		rb.Matchers = ms
	}
	if attr, ok := attrs["agent"]; ok {
		diags = append(diags, scopeAlert.checkExpr(attr.Expr, cty.String, "agent")...)
		rb.AgentExpr = attr.Expr
	}
	_, hasMatchers := attrs["matchers"]
	if !hasMatchers && !hasBlock(content.Blocks, "match") {
		diags = append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagWarning,
			Summary:  "Runbook matches every alert",
			Detail:   fmt.Sprintf("Runbook %q has no match block and no matchers, so it takes every alert that no earlier runbook took.", rb.Name),
			Subject:  block.DefRange.Ptr(),
		})
	}

	causes := map[string]hcl2.Range{}
	for _, b := range content.Blocks {
		if b.Type != "cause" {
			continue
		}
		c, d := decodeCause(b)
		diags = append(diags, d...)
		if first, dup := causes[c.Name]; dup {
			diags = append(diags, &hcl2.Diagnostic{
				Severity: hcl2.DiagError,
				Summary:  fmt.Sprintf("Duplicate cause %q", c.Name),
				Detail:   fmt.Sprintf("Runbook %q already has a cause %q, first defined at %s.", rb.Name, c.Name, posString(first)),
				Subject:  b.LabelRanges[0].Ptr(),
				Context:  b.DefRange.Ptr(),
			})
			continue
		}
		causes[c.Name] = b.DefRange
		rb.Causes = append(rb.Causes, c)
	}
	if b := singleBlock(&diags, content.Blocks, "verify"); b != nil {
		diags = append(diags, decodeVerify(b, &rb.Verify)...)
	}
	if b := singleBlock(&diags, content.Blocks, "escalate"); b != nil {
		e, d := decodeEscalate(b)
		diags = append(diags, d...)
		rb.Escalate = e
	}
	if b := singleBlock(&diags, content.Blocks, "budget"); b != nil {
		diags = append(diags, decodeBudget(b, &rb.Budget)...)
	}
	if b := singleBlock(&diags, content.Blocks, "switchover"); b != nil {
		s, d := decodeSwitchover(b)
		diags = append(diags, d...)
		rb.Switchover = s
		for _, cb := range content.Blocks {
			if cb.Type == "cause" {
				diags = append(diags, &hcl2.Diagnostic{
					Severity: hcl2.DiagError,
					Summary:  "Cause in a switchover runbook",
					Detail:   fmt.Sprintf("Runbook %q switches its pool away from the agent and never diagnoses it; move the causes to a recovery runbook.", rb.Name),
					Subject:  cb.DefRange.Ptr(),
				})
			}
		}
	}
	diags = append(diags, decodeSafety(rb, attrs, content.Blocks)...)
	rb.compile()
	return rb, diags
}

func decodeMatch(block *hcl2.Block) (map[string]string, hcl2.Diagnostics) {
	attrs, diags := block.Body.JustAttributes()
	out := make(map[string]string, len(attrs))
	for name, attr := range attrs {
		if !model.LegacyValidation.IsValidLabelName(name) {
			diags = append(diags, &hcl2.Diagnostic{
				Severity: hcl2.DiagError,
				Summary:  "Invalid label name",
				Detail:   fmt.Sprintf("%q is not a Prometheus label name (letters, digits and '_'); use matchers = [...] for other names.", name),
				Subject:  attr.NameRange.Ptr(),
			})
			continue
		}
		v, d := decodeString(attr)
		diags = append(diags, d...)
		if !d.HasErrors() {
			out[name] = v
		}
	}
	return out, diags
}

func decodeMatchers(attr *hcl2.Attribute) (labels.Matchers, hcl2.Diagnostics) {
	list, diags := decodeStringList(attr)
	if diags.HasErrors() {
		return nil, diags
	}
	elems, _ := hcl2.ExprList(attr.Expr)
	var out labels.Matchers
	for i, s := range list {
		subject := attr.Expr.Range()
		if len(elems) == len(list) {
			subject = elems[i].Range()
		}
		ms, warn, err := parseMatchers(s)
		if err != nil {
			diags = append(diags, &hcl2.Diagnostic{
				Severity: hcl2.DiagError,
				Summary:  "Invalid matcher",
				Detail:   fmt.Sprintf("%q is not an Alertmanager matcher (e.g. alertname=~\"Medic.*\"): %v.", s, err),
				Subject:  subject.Ptr(),
				Context:  attr.Range.Ptr(),
			})
			continue
		}
		if warn != "" {
			diags = append(diags, &hcl2.Diagnostic{
				Severity: hcl2.DiagWarning,
				Summary:  "Matcher uses the classic syntax",
				Detail:   warn,
				Subject:  subject.Ptr(),
			})
		}
		out = append(out, ms...)
	}
	return out, diags
}

func decodeCause(block *hcl2.Block) (*Cause, hcl2.Diagnostics) {
	content, diags := block.Body.Content(causeSchema)
	c := &Cause{Name: block.Labels[0], Timeout: DefaultCauseTimeout, DeclRange: block.DefRange}
	if attr, ok := content.Attributes["when"]; ok {
		diags = append(diags, scopeCondition.checkExpr(attr.Expr, cty.Bool, "when")...)
		c.When = attr.Expr
	}
	decodeAttr(&diags, content.Attributes, "repair", &c.Repair, decodeArgv)
	decodeAttr(&diags, content.Attributes, "timeout", &c.Timeout, decodeDuration)
	return c, diags
}

// intIn decodes a whole number in [lo, hi].
func intIn(lo, hi int) func(*hcl2.Attribute) (int, hcl2.Diagnostics) {
	return func(attr *hcl2.Attribute) (int, hcl2.Diagnostics) { return decodeInt(attr, lo, hi) }
}

func decodeVerify(block *hcl2.Block, v *Verify) hcl2.Diagnostics {
	content, diags := block.Body.Content(verifySchema)
	decodeAttr(&diags, content.Attributes, "attempts", &v.Attempts, intIn(1, 1000))
	decodeAttr(&diags, content.Attributes, "interval", &v.Interval, decodeDuration)
	return diags
}

func decodeEscalate(block *hcl2.Block) (*Escalate, hcl2.Diagnostics) {
	content, diags := block.Body.Content(escalateSchema)
	e := &Escalate{Timeout: DefaultEscalateTimeout, RetryFor: DefaultEscalateRetryFor}
	attrs := content.Attributes
	hasWebhook := decodeAttr(&diags, attrs, "webhook", &e.Webhook, decodeURL)
	hasCommand := decodeAttr(&diags, attrs, "command", &e.Command, decodeArgv)
	decodeAttr(&diags, attrs, "timeout", &e.Timeout, decodeDuration)
	decodeAttr(&diags, attrs, "retry_for", &e.RetryFor, decodeRetryFor)
	if !hasWebhook && !hasCommand {
		diags = append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  "Escalation without a target",
			Detail:   "An escalate block needs webhook = \"https://...\" and/or command = [...]; remove the block to escalate by outcome only.",
			Subject:  block.DefRange.Ptr(),
		})
	}
	return e, diags
}

func decodeBudget(block *hcl2.Block, b *Budget) hcl2.Diagnostics {
	content, diags := block.Body.Content(budgetSchema)
	decodeAttr(&diags, content.Attributes, "restarts", &b.Restarts, intIn(0, 1000000))
	decodeAttr(&diags, content.Attributes, "window", &b.Window, decodeDuration)
	return diags
}

func decodeSwitchover(block *hcl2.Block) (*Switchover, hcl2.Diagnostics) {
	content, diags := block.Body.Content(switchoverSchema)
	s := &Switchover{}
	if attr, ok := content.Attributes["pool"]; ok {
		diags = append(diags, scopeAlert.checkExpr(attr.Expr, cty.String, "pool")...)
		s.Pool = attr.Expr
	}
	return s, diags
}

func decodePool(block *hcl2.Block) (*Pool, hcl2.Diagnostics) {
	diags := checkName(block)
	content, d := block.Body.Content(poolSchema)
	diags = append(diags, d...)
	p := &Pool{Name: block.Labels[0], CheckInterval: DefaultCheckInterval, MaxAttempts: DefaultMaxAttempts, DeclRange: block.DefRange}
	attrs := content.Attributes
	if attr, ok := attrs["agents"]; ok {
		p.agentsExpr = attr.Expr
	}
	if decodeAttr(&diags, attrs, "agents", &p.Agents, decodeStringList) && len(p.Agents) == 0 {
		diags = append(diags, attrDiag(attrs["agents"], "Pool without agents", fmt.Sprintf("Pool %q needs at least one agent to deliver its configs.", p.Name)))
	}
	decodeAttr(&diags, attrs, "check_interval", &p.CheckInterval, decodeDuration)
	decodeAttr(&diags, attrs, "max_attempts", &p.MaxAttempts, func(a *hcl2.Attribute) (int, hcl2.Diagnostics) {
		return decodeInt(a, 1, 1000000)
	})
	if attr, ok := attrs["device_url"]; ok {
		d := scopeDevice.checkExpr(attr.Expr, cty.String, "device_url")
		diags = append(diags, d...)
		p.DeviceURL = attr.Expr
		if !d.HasErrors() {
			if u, err := p.renderDeviceURL("device-1"); err != nil {
				diags = append(diags, attrDiag(attr, "Invalid device_url", err.Error()))
			} else if err := checkHTTPURL(u); err != nil {
				diags = append(diags, attrDiag(attr, "Invalid device_url", strings.Replace(err.Error(), "must be", "must render to", 1)))
			} else {
				diags = append(diags, checkDevicePosition(p, attr)...)
			}
		}
	}
	return p, diags
}

// deviceProbes stand for device IDs when finding where device_url puts the
// device: where two renderings differ, the device is. Letters only, so
// that escaping changes neither.
var deviceProbes = [2]string{"medicdeviceprobeone", "otherdeviceprobetwo"}

// checkDevicePosition finds where a pool's device_url puts the device.
// In the host, device IDs are held to one DNS label (Pool.CheckDevice);
// in the user info, a device would choose credentials, which is refused.
func checkDevicePosition(p *Pool, attr *hcl2.Attribute) hcl2.Diagnostics {
	var us [2]*url.URL
	for i, probe := range deviceProbes {
		s, err := p.renderDeviceURL(probe)
		if err != nil {
			return hcl2.Diagnostics{attrDiag(attr, "Invalid device_url", err.Error())}
		}
		if us[i], err = url.Parse(s); err != nil {
			return hcl2.Diagnostics{attrDiag(attr, "Invalid device_url", fmt.Sprintf("%q is not a URL: %v.", s, err))}
		}
	}
	if us[0].User.String() != us[1].User.String() {
		return hcl2.Diagnostics{attrDiag(attr, "Invalid device_url", "The device_url puts ${device} in the URL's user info; put it in the host or the path.")}
	}
	p.deviceInHost = us[0].Host != us[1].Host
	return nil
}

func hasBlock(blocks hcl2.Blocks, typ string) bool {
	for _, b := range blocks {
		if b.Type == typ {
			return true
		}
	}
	return false
}

// mapKeyRange is where key is written in a map literal, so that a
// diagnostic about one key points at it rather than at the whole map;
// otherwise def.
func mapKeyRange(expr hcl2.Expression, key string, def *hcl2.Range) *hcl2.Range {
	pairs, diags := hcl2.ExprMap(expr)
	if diags.HasErrors() {
		return def
	}
	for _, kv := range pairs {
		v, d := kv.Key.Value(nil)
		if !d.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() && v.AsString() == key {
			return kv.Key.Range().Ptr()
		}
	}
	return def
}
