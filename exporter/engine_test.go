package exporter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/runbooks"
)

// withEngine starts a node whose watchdog runs go to the real engine, and
// returns a channel of the watchdog run records.
func withEngine(t *testing.T, cfg *hcl.Config, opts Options) (*started, <-chan *runbooks.RunRecord) {
	t.Helper()
	recs := make(chan *runbooks.RunRecord, 16)
	opts.Config = cfg
	opts.OnRecord = func(r *runbooks.RunRecord) { recs <- r }
	n := startNode(t, opts, nil)
	eng := runbooks.New(runbooks.Options{
		Config:      n.Config,
		Node:        n.Name(),
		Agents:      n.Node,
		Locker:      runbooks.NewMemoryLocker(),
		Logger:      testLogger(t),
		BackoffBase: -1,
	})
	n.SetRunner(eng)
	return n, recs
}

func nextRecord(t *testing.T, recs <-chan *runbooks.RunRecord) *runbooks.RunRecord {
	t.Helper()
	select {
	case r := <-recs:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no watchdog run record")
		return nil
	}
}

func steps(r *runbooks.RunRecord) []string {
	var out []string
	for _, s := range r.Steps {
		out = append(out, s.Name)
	}
	return out
}

func TestEngineWatchdogRestartsCrashedAgent(t *testing.T) {
	def, addr := testAgent(t, "crashy")
	n, recs := withEngine(t, configOf(def), Options{})
	first := n.waitServing(t, "crashy")
	call(t, "POST", "http://"+addr+"/die?code=7", "")
	rec := nextRecord(t, recs)
	if rec.Outcome != runbooks.OutcomeRecovered || rec.Trigger != runbooks.TriggerWatchdog || rec.Labels["alertname"] != "MedicAgentDown" {
		t.Fatalf("record: outcome %s trigger %s labels %v error %q", rec.Outcome, rec.Trigger, rec.Labels, rec.Error)
	}
	if diff := cmp.Diff([]string{"liveness", "restart", "verify 1/3"}, steps(rec)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if !strings.Contains(rec.Steps[0].Detail, "exited") {
		t.Errorf("liveness detail %q", rec.Steps[0].Detail)
	}
	if id := n.pidOf("crashy"); id.PID == 0 || id == first {
		t.Fatalf("not running again: %+v", id)
	}
}

func TestEngineWatchdogRestartsHungAgent(t *testing.T) {
	ln, nodeURL := listen(t)
	def, addr := testAgent(t, "hangs", "--heartbeat-url", nodeURL, "--heartbeat-interval", "100ms")
	def.Heartbeat = &hcl.Heartbeat{Timeout: time.Second}
	recs := make(chan *runbooks.RunRecord, 16)
	n := startNode(t, Options{Config: configOf(def), OnRecord: func(r *runbooks.RunRecord) { recs <- r }}, ln)
	n.SetRunner(runbooks.New(runbooks.Options{Config: n.Config, Node: n.Name(), Agents: n.Node, Logger: testLogger(t), BackoffBase: -1}))
	first := n.waitServing(t, "hangs")
	call(t, "POST", "http://"+addr+"/hang", "")
	rec := nextRecord(t, recs)
	if rec.Outcome != runbooks.OutcomeRecovered || rec.Labels["alertname"] != "MedicAgentHeartbeatMissed" {
		t.Fatalf("record: outcome %s labels %v error %q steps %v", rec.Outcome, rec.Labels, rec.Error, rec.Steps)
	}
	if diff := cmp.Diff([]string{"liveness", "probe", "diagnose", "restart", "verify 1/3"}, steps(rec)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if !strings.Contains(rec.Steps[1].Detail, "heartbeat overdue") {
		t.Errorf("probe detail %q", rec.Steps[1].Detail)
	}
	if rec.Usage == nil || rec.Usage.Memory <= 0 || rec.Usage.Disk <= 0 {
		t.Errorf("usage %+v", rec.Usage)
	}
	if id := n.pidOf("hangs"); id.PID == 0 || id == first {
		t.Fatalf("not restarted: %+v", id)
	}
}

// An agent that cannot start: the watchdog keeps handing it to the engine
// until the budget is spent, then the node stops trying (no crash loop).
func TestEngineWatchdogStopsAtExhaustedBudget(t *testing.T) {
	def, _ := testAgent(t, "doomed", "--fail-start")
	cfg := configOf(def)
	cfg.Runbooks = []*hcl.Runbook{{
		Name:   "down",
		Match:  map[string]string{"alertname": "MedicAgentDown"},
		Verify: hcl.Verify{Attempts: 1, Interval: 10 * time.Millisecond},
		Budget: hcl.Budget{Restarts: 2, Window: time.Hour},
	}}
	n, recs := withEngine(t, cfg, Options{WatchdogDebounce: 20 * time.Millisecond, StartWait: 100 * time.Millisecond})
	var got []*runbooks.RunRecord
	for len(got) < 3 {
		got = append(got, nextRecord(t, recs))
	}
	for i, r := range got {
		if r.Outcome != runbooks.OutcomeEscalated || r.Runbook != "down" {
			t.Errorf("run %d: %s %s (%s)", i, r.Runbook, r.Outcome, r.Reason)
		}
	}
	if diff := cmp.Diff([]string{"liveness", "budget", "escalate"}, steps(got[2])); diff != "" {
		t.Errorf("last run steps (-want +got):\n%s", diff)
	}
	select {
	case r := <-recs:
		t.Fatalf("a fourth run after the budget was spent: %s %s", r.Outcome, r.Reason)
	case <-time.After(500 * time.Millisecond):
	}
	if a, _ := n.agent("doomed"); a.restarts.Load() != 2 {
		t.Errorf("restarts = %d, want 2", a.restarts.Load())
	}
	errLog, _ := os.ReadFile(filepath.Join(def.Workdir, "doomed.stderr.log"))
	if !strings.Contains(string(errLog), "--fail-start") {
		t.Errorf("stderr log %q", errLog)
	}
}
