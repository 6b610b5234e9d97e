package hcl

import (
	"fmt"
	"net"
	"regexp"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/medicops/medic/probe"
)

// decodeProbe decodes a `probe "KIND" {}` block. The kinds, and the
// attributes each takes, are package probe's registry; this file decodes
// the attributes (probeAttrs).
func decodeProbe(block *hcl2.Block) (*Probe, hcl2.Diagnostics) {
	kind := block.Labels[0]
	k, ok := probe.Lookup(kind)
	if !ok {
		kinds := probe.Names()
		detail := fmt.Sprintf("%q is not a probe kind; use one of %s.", kind, englishList(kinds))
		if s := suggest(kind, kinds); s != "" {
			detail = fmt.Sprintf("%q is not a probe kind. Did you mean %q?", kind, s)
		}
		return nil, hcl2.Diagnostics{{
			Severity: hcl2.DiagError,
			Summary:  "Unsupported probe kind",
			Detail:   detail,
			Subject:  block.LabelRanges[0].Ptr(),
			Context:  block.DefRange.Ptr(),
		}}
	}
	content, diags := block.Body.Content(k.Schema())
	p := &Probe{Kind: kind, Timeout: DefaultProbeTimeout, Interval: DefaultProbeInterval}
	for _, a := range probeAttrs {
		a.decode(&diags, content.Attributes, p)
	}
	if attr, ok := content.Attributes["timeout"]; ok && p.Timeout > p.Interval {
		diags = append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagWarning,
			Summary:  "Probe timeout exceeds its interval",
			Detail:   fmt.Sprintf("The probe may run for %s but starts every %s; probes will overlap.", p.Timeout, p.Interval),
			Subject:  attr.Expr.Range().Ptr(),
		})
	}
	return p, diags
}

// probeAttr decodes one attribute of a probe block into its field.
type probeAttr struct {
	name   string
	decode func(diags *hcl2.Diagnostics, attrs hcl2.Attributes, p *Probe)
}

func probeField[T any](name string, field func(*Probe) *T, fn func(*hcl2.Attribute) (T, hcl2.Diagnostics)) probeAttr {
	return probeAttr{name, func(diags *hcl2.Diagnostics, attrs hcl2.Attributes, p *Probe) {
		decodeAttr(diags, attrs, name, field(p), fn)
	}}
}

// probeAttrs are the attributes any probe kind may take, in the order their
// diagnostics come. A kind that declares an attribute missing here fails
// TestProbeKindsDecodeAndPlan.
var probeAttrs = []probeAttr{
	probeField("url", func(p *Probe) *string { return &p.URL }, decodeURL),
	probeField("address", func(p *Probe) *string { return &p.Address }, decodeAddress),
	probeField("command", func(p *Probe) *[]string { return &p.Command }, decodeArgv),
	probeField("timeout", func(p *Probe) *time.Duration { return &p.Timeout }, decodeDuration),
	probeField("interval", func(p *Probe) *time.Duration { return &p.Interval }, decodeDuration),
	probeField("expect_status", func(p *Probe) *int { return &p.ExpectStatus }, intIn(100, 599)),
	probeField("expect_body", func(p *Probe) **regexp.Regexp { return &p.ExpectBody }, decodeExpectBody),
}

// decodeAddress decodes a host:port.
func decodeAddress(attr *hcl2.Attribute) (string, hcl2.Diagnostics) {
	s, diags := decodeString(attr)
	if diags.HasErrors() {
		return "", diags
	}
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		return "", append(diags, attrDiag(attr, "Invalid address", fmt.Sprintf("%q is not host:port, e.g. \"127.0.0.1:8081\".", s)))
	}
	return s, diags
}

// decodeExpectBody decodes the regular expression an http probe's body
// must match.
func decodeExpectBody(attr *hcl2.Attribute) (*regexp.Regexp, hcl2.Diagnostics) {
	s, diags := decodeString(attr)
	if diags.HasErrors() {
		return nil, diags
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, append(diags, attrDiag(attr, "Invalid regular expression", fmt.Sprintf("expect_body: %v.", err)))
	}
	return re, diags
}

// probeText is `medic plan`'s description of a probe: its kind, what it
// checks (from the kind's registration) and its timeout.
func probeText(p *Probe) string {
	var target string
	if k, ok := probe.Lookup(p.Kind); ok {
		target = k.Target(p)
	}
	return fmt.Sprintf("%s %s (timeout %s)", p.Kind, target, dur(p.Timeout))
}
