package bridge

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/hcl"
)

func TestRouteAlert(t *testing.T) {
	cfg := loadTestConfig(t, testHCL)
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
		{"no runbook", map[string]string{"alertname": "Other", "agent": "a1"}, got{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := RouteAlert(cfg, hcl.Alert{Labels: tc.labels, Status: "firing"})
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
