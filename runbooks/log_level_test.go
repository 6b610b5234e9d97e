package runbooks

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/medicops/medic/hcl"
)

// TestRunFinishedLogLevel: a run that leaves the agent broken or does
// nothing about the alert is logged as a warning, so that it stands out
// from the routine runs.
func TestRunFinishedLogLevel(t *testing.T) {
	dir := t.TempDir()
	cfg := loadConfig(t, recoveryConfig(t, dir, ""))
	tests := []struct {
		name, runbook, agent, alertname, outcome, level string
	}{
		{"skipped", "", "ops", "SomethingElse", OutcomeSkipped, "level=INFO"},
		{"failed", "nope", "ops", "MedicAgentDown", OutcomeFailed, "level=WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: &fakeAgents{},
				Logger: slog.New(slog.NewTextHandler(&buf, nil))})
			rec := e.Run(context.Background(), Request{Runbook: tt.runbook, Alert: alertFor(tt.agent, tt.alertname)})
			if rec.Outcome != tt.outcome {
				t.Fatalf("outcome %s, want %s", rec.Outcome, tt.outcome)
			}
			var line string
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.Contains(l, `msg="run finished"`) {
					line = l
				}
			}
			if !strings.Contains(line, tt.level) {
				t.Errorf("run finished logged as %q; want %s", line, tt.level)
			}
		})
	}
}
