package hcl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPlanExamples runs the plan of every payload in deploy/examples against
// the example estate and the library, and compares the output with
// testdata/plan/NAME.golden.
func TestPlanExamples(t *testing.T) {
	cfg := estate(t)
	payloads := mustGlob(t, "../deploy/examples/*.json")
	for _, p := range payloads {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			alerts, err := ParseWebhook(b)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := WritePlan(&out, cfg.Plan(alerts)); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata/plan", name+".golden")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./hcl -run TestPlanExamples -update and review the result)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("plan of %s (-want +got):\n%s", p, diff)
			}
		})
	}
}

// TestPlanDecisions asserts the decisions behind the golden output, so that
// regenerating the golden files cannot hide a wrong plan.
func TestPlanDecisions(t *testing.T) {
	cfg := estate(t)
	b, err := os.ReadFile("../deploy/examples/agent-alerts.json")
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := ParseWebhook(b)
	if err != nil {
		t.Fatal(err)
	}
	type decision struct{ Runbook, Agent, Node, Ignored string }
	var got []decision
	for _, p := range cfg.Plan(alerts) {
		d := decision{Agent: p.Agent, Node: p.Node, Ignored: p.Ignored}
		if p.Runbook != nil {
			d.Runbook = p.Runbook.Name
		}
		got = append(got, d)
	}
	want := []decision{
		{Runbook: "agent-recovery", Agent: "ops-agent", Node: "web-01"},
		{Runbook: "agent-recovery", Agent: "log-shipper", Node: "web-02"},
		{Ignored: "resolved: medic acts on firing alerts only"},
		{Runbook: "agent-recovery", Agent: "ghost-agent", Ignored: `agent "ghost-agent" is not defined in the loaded configuration`},
		{Ignored: "no runbook matches"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}

	plans := cfg.Plan(alerts[:1])
	steps := strings.Join(plans[0].Steps, "\n")
	for _, s := range []string{
		"cause memory: when usage.memory > agent.thresholds.memory → repair [\"/opt/medic/repair/memory.sh\"] (timeout 30s)",
		"cause disk: when usage.disk > agent.thresholds.disk → repair [\"/opt/medic/repair/disk.sh\"] (timeout 1m)",
		"verify      probe up to 3 times, 2s apart",
		"POST https://oncall.example/hooks/medic (timeout 10s)",
	} {
		if !strings.Contains(steps, s) {
			t.Errorf("steps lack %q:\n%s", s, steps)
		}
	}
}

func TestPlanUnroutableAndNoCauses(t *testing.T) {
	cfg, diags := LoadSources([]Source{{Name: "u.hcl", Bytes: []byte(`
agent "a" {
  command = ["/bin/a"]
}
runbook "restart" {
  match {
    alertname = "A"
  }
}`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p := cfg.Plan([]Alert{{Labels: map[string]string{"alertname": "A", "agent": "a"}, Status: "firing"}})[0]
	if p.Ignored != "" || p.Node != Unroutable {
		t.Errorf("plan = %+v; want node %s", p, Unroutable)
	}
	want := []string{
		`liveness    check a's process (medic node's own child, PID and start time); dead → restart`,
		`probe       none configured: liveness stands in for it`,
		`diagnose    no causes: restart alone`,
		`restart     medic node restarts its child: ["/bin/a"]`,
		`verify      liveness up to 3 times, 2s apart; alive → outcome "recovered"`,
		`escalate    still failing → no escalation target configured; outcome "escalated"`,
	}
	if diff := cmp.Diff(want, p.Steps); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	p = cfg.Plan([]Alert{{Labels: map[string]string{"alertname": "A"}, Status: "firing"}})[0]
	if p.Ignored != `runbook "restart" names no agent: the alert has no "agent" label` {
		t.Errorf("ignored = %q", p.Ignored)
	}
}

func TestParseWebhook(t *testing.T) {
	for _, tc := range []struct {
		name, payload string
		want          []Alert
		err           string
	}{
		{
			name: "tolerates unknown fields and keeps per-alert status",
			payload: `{"version":"4","status":"firing","futureField":{"x":1},"alerts":[
				{"status":"firing","labels":{"alertname":"A"},"annotations":{"s":"x"},"fingerprint":"f1","newAlertField":true},
				{"status":"resolved","labels":{"alertname":"B"},"fingerprint":"f2"}]}`,
			want: []Alert{
				{Labels: map[string]string{"alertname": "A"}, Annotations: map[string]string{"s": "x"}, Status: "firing", Fingerprint: "f1"},
				{Labels: map[string]string{"alertname": "B"}, Status: "resolved", Fingerprint: "f2"},
			},
		},
		{name: "not JSON", payload: `alerts: []`, err: "not an Alertmanager webhook payload"},
		{name: "no alerts", payload: `{"version":"4"}`, err: `no "alerts" list`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseWebhook([]byte(tc.payload))
			if (err != nil) != (tc.err != "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
