package route

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
)

const routeHCL = `
agent "a1" {
  node    = "n1"
  command = ["/bin/sleep", "3600"]
}

agent "a2" {
  node    = "n2"
  command = ["/bin/sleep", "3600"]
}

agent "floating" {
  command = ["/bin/sleep", "3600"]
}

runbook "recover" {
  match { alertname = "AgentDown" }
}
`

func TestDecide(t *testing.T) {
	cfg, diags := hcl.LoadSources([]hcl.Source{{Name: "test.hcl", Bytes: []byte(routeHCL)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	type got struct{ Runbook, Agent, Node string }
	for _, tc := range []struct {
		name       string
		labels     map[string]string
		want       got
		wantReason bool
	}{
		{"node label wins", map[string]string{"alertname": "AgentDown", "agent": "a1", "node": "other"}, got{"recover", "a1", "other"}, false},
		{"agent's node attribute", map[string]string{"alertname": "AgentDown", "agent": "a2"}, got{"recover", "a2", "n2"}, false},
		{"agent without node", map[string]string{"alertname": "AgentDown", "agent": "floating"}, got{"recover", "floating", ""}, true},
		{"unknown agent", map[string]string{"alertname": "AgentDown", "agent": "ghost"}, got{"recover", "ghost", ""}, true},
		{"no agent", map[string]string{"alertname": "AgentDown"}, got{"recover", "", ""}, true},
		{"unusable node name", map[string]string{"alertname": "AgentDown", "agent": "a1", "node": "n{1}"}, got{"recover", "a1", ""}, true},
		{"no runbook", map[string]string{"alertname": "Other", "agent": "a1"}, got{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Decide(cfg, alert.Alert{Labels: tc.labels, Status: "firing"})
			g := got{Agent: r.Agent, Node: r.Node}
			if r.Runbook != nil {
				g.Runbook = r.Runbook.Name
			}
			if d := cmp.Diff(tc.want, g); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
			if (r.Reason != "") != tc.wantReason {
				t.Errorf("reason %q, want one: %v", r.Reason, tc.wantReason)
			}
		})
	}
}
