package runbooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

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

// TestRestartStepDetail: the restart step of a run record says what was
// done and why, so that `ok` and the detail agree.
func TestRestartStepDetail(t *testing.T) {
	dir := t.TempDir()
	cfg := loadConfig(t, recoveryConfig(t, dir, ""))
	tests := []struct {
		name   string
		agents *fakeAgents
		ok     bool
		detail string
	}{
		{"dead agent restarted", &fakeAgents{alive: false, probeOK: true}, true, "restarted (agent is not running)"},
		{"restart fails", &fakeAgents{alive: false, restartErr: errors.New("exit status 1")}, false, "restart failed (agent is not running)"},
		{"probe failed", &fakeAgents{alive: true, probeOK: false}, true, "restarted (probe failed, no cause matched: restart alone)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: tt.agents, Sleep: func(context.Context, time.Duration) error { return nil }})
			rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
			for _, s := range rec.Steps {
				if s.Name == "restart" {
					if s.OK != tt.ok || s.Detail != tt.detail {
						t.Errorf("restart step ok=%v %q; want ok=%v %q", s.OK, s.Detail, tt.ok, tt.detail)
					}
					return
				}
			}
			t.Errorf("no restart step in %v", stepNames(rec))
		})
	}
}
