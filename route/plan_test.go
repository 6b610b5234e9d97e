package route

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// estate loads the example estate with the runbook library, as the README
// tells users to.
func estate(t testing.TB) *hcl.Config {
	t.Helper()
	cfg, diags := hcl.LoadPaths("../deploy/examples/estate.hcl", "../runbooks/library")
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatalf("loading the estate and the library: %v", diags)
	}
	return cfg
}

func mustGlob(t *testing.T, pattern string) []string {
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v %v", pattern, m, err)
	}
	return m
}

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
			alerts, err := alert.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := hcl.WritePlan(&out, Plan(cfg, alerts)); err != nil {
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
	alerts, err := alert.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	type decision struct{ Runbook, Agent, Node, Ignored string }
	var got []decision
	for _, p := range Plan(cfg, alerts) {
		d := decision{Agent: p.Agent, Node: p.Node, Ignored: p.Ignored}
		if p.Runbook != nil {
			d.Runbook = p.Runbook.Name
		}
		got = append(got, d)
	}
	want := []decision{
		{Runbook: "agent-recovery", Agent: "ops-agent", Node: "web-01"},
		{Runbook: "agent-recovery", Agent: "log-shipper", Node: "web-02"},
		{Runbook: "agent-recovery", Agent: "ops-agent", Node: "web-01", Ignored: "resolved: medic acts on firing alerts only"},
		{Runbook: "agent-recovery", Agent: "ghost-agent", Node: "web-03", Ignored: `agent "ghost-agent" is not defined in the loaded configuration; node web-03 records the run as "skipped"`},
		{Ignored: "no runbook matches"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}

	plans := Plan(cfg, alerts[:1])
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
	cfg, diags := hcl.LoadSources([]hcl.Source{{Name: "u.hcl", Bytes: []byte(`
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
	p := Plan(cfg, []alert.Alert{{Labels: map[string]string{"alertname": "A", "agent": "a"}, Status: "firing"}})[0]
	if want := `unroutable: the alert has no node label and agent "a" has no node attribute; the bridge records the alert as "unroutable" and escalates it`; p.Ignored != want || p.Node != "" || len(p.Steps) > 0 {
		t.Errorf("plan = %+v; want ignored %q", p, want)
	}
	p = Plan(cfg, []alert.Alert{{Labels: map[string]string{"alertname": "A", "agent": "a", "node": "n1"}, Status: "firing"}})[0]
	if p.Ignored != "" || p.Node != "n1" {
		t.Errorf("plan = %+v; want node n1", p)
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
	p = Plan(cfg, []alert.Alert{{Labels: map[string]string{"alertname": "A", "node": "n1"}, Status: "firing"}})[0]
	if p.Ignored != `runbook "restart" names no agent: the alert has no "agent" label; node n1 records the run as "skipped"` {
		t.Errorf("ignored = %q", p.Ignored)
	}
}

// TestPlanAlertStatus: only a firing alert gets a plan; an alert whose
// status is neither firing nor resolved (which the bridge refuses) is
// ignored with the reason, not planned as if it were firing.
func TestPlanAlertStatus(t *testing.T) {
	cfg, diags := hcl.LoadSources([]hcl.Source{{Name: "s.hcl", Bytes: []byte(`
agent "a" {
  command = ["/bin/a"]
}
runbook "r" {
  match {
    alertname = "A"
  }
}`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct{ status, ignored string }{
		{"firing", ""},
		{"resolved", "resolved: medic acts on firing alerts only"},
		{"weird", `status "weird" is neither "firing" nor "resolved"`},
		{"", `status "" is neither "firing" nor "resolved"`},
	}
	for _, tc := range tests {
		p := Plan(cfg, []alert.Alert{{Labels: map[string]string{"alertname": "A", "agent": "a", "node": "n1"}, Status: tc.status}})[0]
		if (tc.ignored == "") != (p.Ignored == "") || !strings.Contains(p.Ignored, tc.ignored) || (tc.ignored != "" && len(p.Steps) > 0) {
			t.Errorf("status %q: ignored %q, %d steps; want ignored %q", tc.status, p.Ignored, len(p.Steps), tc.ignored)
		}
	}
}

func TestPlanShowsModeAndLimits(t *testing.T) {
	cfg, _ := hcl.LoadPaths("../hcl/testdata/good/safety.hcl")
	plans := Plan(cfg, []alert.Alert{{Labels: map[string]string{"alertname": "AgentDown", "agent": "eu1-a", "cluster": "eu1"}, Status: "firing"}})
	var b strings.Builder
	if err := hcl.WritePlan(&b, plans); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"mode:     approve (samples and diagnoses, then waits up to 10m",
		`limit:    concurrency at most 1 runs at once across all nodes for key alert.labels.cluster = "eu1" (max 3, max_ratio 0.50 of 2 matching agents)`,
		`limit:    circuit     past 3 runs per agent within 1h`,
		"limit:    silence     silence the alert in Alertmanager http://127.0.0.1:9093 for 10m",
		`limit:    redact      "(?i)password=\\S+"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
}

// TestDecideNode: the node is the alert's node label, else the agent's
// node attribute; an agent without one, or unknown, is unroutable.
func TestDecideNode(t *testing.T) {
	cfg := estate(t)
	for _, tc := range []struct {
		labels     map[string]string
		want, from string
	}{
		{map[string]string{"alertname": "MedicAgentDown", "agent": "ops-agent", "node": "web-09"}, "web-09", "the alert's node label"},
		{map[string]string{"alertname": "MedicAgentDown", "agent": "ops-agent"}, "web-01", `agent "ops-agent"'s node attribute`},
		{map[string]string{"alertname": "MedicAgentDown", "agent": "ghost"}, "", ""},
		{map[string]string{"alertname": "MedicAgentDown", "agent": "ops-agent", "node": "a{b}"}, "", ""},
	} {
		d := Decide(cfg, alert.Alert{Labels: tc.labels, Status: "firing"})
		if d.Node != tc.want || d.NodeFrom != tc.from || (d.Node == "") != (d.Reason != "") {
			t.Errorf("Decide(%v) = node %q from %q (reason %q), want %q from %q", tc.labels, d.Node, d.NodeFrom, d.Reason, tc.want, tc.from)
		}
	}
	if got := len(cfg.AgentsForNode("web-01")); got != 1 {
		t.Errorf("AgentsForNode(web-01) = %d agents, want 1", got)
	}
}
