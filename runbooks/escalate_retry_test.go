package runbooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/hcl"
)

// An escalation webhook that answers 500 twice and then 200 is retried
// with backoff: the run's record says delivered, and progress showed it
// retrying meanwhile. medic_escalations_total counts the retries and the
// delivery.
func TestEscalationRetriedUntilDelivered(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			http.Error(w, "try later", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	cfg := loadConfig(t, fmt.Sprintf(`
agent "ops" {
  pidfile = "/nonexistent.pid"
  start   = ["true"]
}
runbook "r" {
  match { alertname = "MedicAgentDown" }
  escalate {
    webhook   = "%s"
    retry_for = "1m"
  }
}
`, srv.URL))
	reg := prometheus.NewRegistry()
	var states []string
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: &fakeAgents{restartErr: errors.New("boom")}, Registerer: reg,
		Progress: func(r *RunRecord) { states = append(states, r.Escalation) }})
	rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	last := rec.Steps[len(rec.Steps)-1]
	if rec.Outcome != OutcomeEscalated || rec.Escalation != EscalationDelivered || !last.OK || !strings.Contains(last.Detail, "attempt 3") {
		t.Fatalf("outcome %s, escalation %q, step %+v", rec.Outcome, rec.Escalation, last)
	}
	if hits.Load() != 3 {
		t.Errorf("webhook hit %d times, want 3", hits.Load())
	}
	if len(states) != 2 || states[0] != EscalationRetrying {
		t.Errorf("progress escalation states %v, want two \"retrying\"", states)
	}
	want := `
# HELP medic_escalations_total Escalation deliveries by runbook and result: delivered, failed (retries ran out), retried (an attempt failed and is tried again).
# TYPE medic_escalations_total counter
medic_escalations_total{result="delivered",runbook="r"} 1
medic_escalations_total{result="retried",runbook="r"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "medic_escalations_total"); err != nil {
		t.Error(err)
	}
}
