package hcl

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/alert"
)

func TestDecodeSafety(t *testing.T) {
	cfg, diags := LoadPaths("testdata/good/safety.hcl")
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatal(diags)
	}
	rb := cfg.Runbooks[0]
	if rb.Mode != ModeApprove || rb.ApprovalTTL != 10*time.Minute {
		t.Errorf("mode %q ttl %v", rb.Mode, rb.ApprovalTTL)
	}
	c := rb.Concurrency
	if c == nil || c.Max != 3 || c.MaxRatio != 0.5 || c.Wait != 2*time.Minute || c.Queue != 10 || cfg.SourceText(c.Key.Range()) != "alert.labels.cluster" {
		t.Errorf("concurrency %+v", c)
	}
	if rb.Circuit == nil || *rb.Circuit != (Circuit{MaxRuns: 3, Window: time.Hour}) {
		t.Errorf("circuit %+v", rb.Circuit)
	}
	if s := rb.Silence; s == nil || s.Alertmanager != "http://127.0.0.1:9093" || s.Duration != 10*time.Minute || s.Timeout != DefaultSilenceTimeout {
		t.Errorf("silence %+v", s)
	}
	var pats []string
	for _, re := range rb.Redact {
		pats = append(pats, re.String())
	}
	if diff := cmp.Diff([]string{`(?i)password=\S+`, `Bearer [A-Za-z0-9._-]+`}, pats); diff != "" {
		t.Error(diff)
	}
	if w := cfg.Runbooks[1]; w.Mode != ModeShadow || w.Concurrency != nil || w.Circuit != nil || w.Silence != nil {
		t.Errorf("watch %+v", w)
	}
	if got := cfg.Agent("eu1-a").Labels; !cmp.Equal(got, map[string]string{"cluster": "eu1"}) {
		t.Errorf("labels %v", got)
	}
	// A runbook without the attributes is auto with the defaults.
	min, _ := LoadPaths("testdata/good/minimal.hcl")
	if r := min.Runbooks[0]; r.Mode != ModeAuto || r.ApprovalTTL != DefaultApprovalTTL {
		t.Errorf("defaults: %q %v", r.Mode, r.ApprovalTTL)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	cfg, _ := LoadPaths("testdata/good/safety.hcl")
	rb := cfg.Runbooks[0]
	for _, tc := range []struct {
		cluster       string
		limit, agents int
	}{
		{"eu1", 1, 2}, // max 3, but 0.5 of 2 agents is 1
		{"us1", 1, 1}, // at least 1
		{"ap1", 1, 0}, // no agent: still 1 (the alert is real)
	} {
		key, limit, agents, err := cfg.ConcurrencyLimit(rb, alert.Alert{Labels: map[string]string{"cluster": tc.cluster}})
		if err != nil || key != tc.cluster || limit != tc.limit || agents != tc.agents {
			t.Errorf("%s: key %q limit %d agents %d err %v", tc.cluster, key, limit, agents, err)
		}
	}
	// A copy: loaded blocks are shared with later loads through the decode
	// cache, and nothing may change them.
	maxOnly, cc := *rb, *rb.Concurrency
	cc.MaxRatio, maxOnly.Concurrency = 0, &cc
	rb = &maxOnly
	if _, limit, _, _ := cfg.ConcurrencyLimit(rb, alert.Alert{Labels: map[string]string{"cluster": "eu1"}}); limit != 3 {
		t.Errorf("max only: %d", limit)
	}
	if _, _, _, err := cfg.ConcurrencyLimit(rb, alert.Alert{Labels: map[string]string{}}); err == nil {
		t.Error("missing key label: no error")
	}
}
