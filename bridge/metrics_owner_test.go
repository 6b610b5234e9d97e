package bridge

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// TestOneOwnerPerMetric: the bridge and the job consumer register only
// their own metrics; the remediation metrics are runbooks' and registered
// once, so all three share one registry (medic serve) without a
// duplicate, and a run the bridge records counts on the same series the
// engine's do.
func TestOneOwnerPerMetric(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	runs := runbooks.NewMetrics(reg)
	m := NewMetrics(reg, runs)
	jobs.NewMetrics(reg, runs)
	m.observe(&runbooks.RunRecord{Runbook: "rb", Outcome: runbooks.OutcomeUnroutable})
	runs.Observe(&runbooks.RunRecord{Runbook: "rb", Outcome: runbooks.OutcomeRecovered})
	m.runs.Escalations().WithLabelValues("rb", "delivered").Inc()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, f := range families {
		series[f.GetName()] += len(f.GetMetric())
	}
	for name, want := range map[string]int{
		"medic_remediations_total":           2,
		"medic_remediation_duration_seconds": 1,
		"medic_escalations_total":            1,
		"medic_alerts_received_total":        2,
	} {
		if series[name] != want {
			t.Errorf("%s: %d series, want %d (all: %v)", name, series[name], want, series)
		}
	}
	// A second owner of a remediation metric is refused.
	defer func() {
		if recover() == nil {
			t.Error("registering the remediation metrics twice on one registry did not panic")
		}
	}()
	runbooks.NewMetrics(reg)
}
