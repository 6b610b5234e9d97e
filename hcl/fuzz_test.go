package hcl

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/alert"
)

// FuzzLoad feeds arbitrary bytes through everything a config goes through:
// loading, diagnostics printing, formatting, matching, evaluation and
// planning. No input may panic, and a config comes back exactly when there
// are no errors.
func FuzzLoad(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"testdata/good/*.hcl", "testdata/bad/*.hcl", "testdata/bad/*/*.hcl", "../runbooks/library/*.hcl", "../deploy/examples/*.hcl"} {
		m, _ := filepath.Glob(pattern)
		seeds = append(seeds, m...)
	}
	if len(seeds) < 40 {
		f.Fatalf("only %d seed files", len(seeds))
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	alerts := []alert.Alert{
		{Labels: map[string]string{"alertname": "MedicAgentDown", "agent": "ops-agent", "node": "web-01"}, Status: "firing", StartsAt: time.Unix(1e9, 0)},
		{Labels: map[string]string{"alertname": "MedicPoolAgentDown", "agent": "cfg-1", "pool": "switches"}, Status: "firing"},
		{Labels: map[string]string{"alertname": "A", "severity": "critical"}, Status: "firing"},
		{Labels: nil, Status: "resolved"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang is a failure too: crash the worker so the fuzzer keeps the
		// input.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("slow input %q", data)) })
		defer watchdog.Stop()
		src := Source{Name: "fuzz.hcl", Bytes: data}
		cfg, diags := LoadSources([]Source{src})
		if (cfg == nil) != diags.HasErrors() {
			t.Fatalf("config %v with diagnostics %v", cfg != nil, diags)
		}
		for _, d := range diags {
			if d.Subject != nil && (d.Subject.Filename != "fuzz.hcl" || d.Subject.Start.Line < 1) {
				t.Fatalf("diagnostic at %v", d.Subject)
			}
		}
		if err := WriteDiagnostics(io.Discard, diags, map[string][]byte{src.Name: data}); err != nil {
			t.Fatal(err)
		}
		_ = DiagnosticsJSON(diags)
		if out, fd := Format(src); !fd.HasErrors() {
			// Formatting must keep the meaning: the formatted file loads to
			// the same verdict.
			cfg2, d2 := LoadSources([]Source{{Name: "fuzz.hcl", Bytes: out}})
			if (cfg2 == nil) != (cfg == nil) {
				t.Fatalf("formatting changed the verdict: before %v, after %v", diags, d2)
			}
		}
		if cfg == nil {
			return
		}
		scan := &Config{Runbooks: cfg.Runbooks}
		for _, a := range alerts {
			rb, skipped := cfg.Match(a)
			rb2, skipped2 := scan.Match(a)
			if rb != rb2 || strings.Join(skipped, "\n") != strings.Join(skipped2, "\n") {
				t.Fatalf("match index disagrees with the scan for %v", a.Labels)
			}
			if rb != nil {
				_, _ = rb.TargetAgent(a)
				if rb.Switchover != nil {
					_, _ = rb.Switchover.PoolName(a)
				}
				for _, ag := range append(cfg.Agents, nil) {
					ctx := EvalContext(a, ag, Usage{Memory: 0.9, CPU: 0.5, Disk: 1})
					for _, c := range rb.Causes {
						_, _ = c.Eval(ctx)
					}
				}
			}
			p := AlertPlan{Alert: a, Node: a.Labels["node"], Unroutable: "none"}
			if p.Runbook, p.Skipped = cfg.Match(a); p.Runbook != nil {
				p.Agent, _ = p.Runbook.TargetAgent(a)
			}
			cfg.Explain(&p)
			_ = WritePlan(io.Discard, []AlertPlan{p})
		}
		for _, p := range cfg.Pools {
			_, _ = p.DeviceURLFor("dev-1")
		}
	})
}
