package runbooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
)

// fakeClock advances only when the engine sleeps, so budget and backoff
// tests take no wall time.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.slept = append(c.slept, d)
	c.mu.Unlock()
	return nil
}

func (c *fakeClock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// fakeAgents is an in-memory agent whose state the test sets; a restart
// makes it alive and (unless stillBroken) healthy.
type fakeAgents struct {
	mu          sync.Mutex
	alive       bool
	probeOK     bool
	usage       hcl.Usage
	stillBroken bool
	restartErr  error
	calls       []string
}

var _ Agents = (*fakeAgents)(nil)

func (f *fakeAgents) Alive(_ context.Context, agent string) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "alive")
	if f.alive {
		return true, "pid 42 alive", nil
	}
	return false, "no process", nil
}

func (f *fakeAgents) Probe(_ context.Context, agent string) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "probe")
	if f.probeOK {
		return true, "200 OK", nil
	}
	return false, "connection refused", errors.New("dial tcp: connection refused")
}

func (f *fakeAgents) Usage(_ context.Context, agent string) (hcl.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "usage")
	return f.usage, nil
}

func (f *fakeAgents) Restart(_ context.Context, agent string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "restart")
	if f.restartErr != nil {
		return f.restartErr
	}
	f.alive = true
	f.probeOK = !f.stillBroken
	f.usage = hcl.Usage{}
	return nil
}

func (f *fakeAgents) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// loadConfig loads HCL text, failing the test on any diagnostic.
func loadConfig(t testing.TB, src string) *hcl.Config {
	t.Helper()
	cfg, diags := hcl.LoadSources([]hcl.Source{{Name: "test.hcl", Bytes: []byte(src)}})
	if diags.HasErrors() {
		t.Fatalf("config: %s", diags.Error())
	}
	return cfg
}

// writeScript writes an executable shell script into dir.
func writeScript(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func stepNames(rec *RunRecord) []string {
	var out []string
	for _, s := range rec.Steps {
		out = append(out, s.Name)
	}
	return out
}

func alertFor(agent, alertname string) alert.Alert {
	return alert.Alert{
		Labels:      map[string]string{"alertname": alertname, "agent": agent, "node": "web-01", "severity": "page"},
		Status:      "firing",
		StartsAt:    time.Date(2026, 11, 22, 0, 59, 0, 0, time.UTC),
		Fingerprint: "abc123",
	}
}

// recoveryConfig has one agent and the recovery runbook; repair scripts
// write what they saw into out.
func recoveryConfig(t testing.TB, dir, webhook string) string {
	t.Helper()
	mem := writeScript(t, dir, "memory.sh", `echo "cause=$MEDIC_CAUSE agent=$MEDIC_AGENT node=$MEDIC_NODE run=$MEDIC_RUN_ID sev=$MEDIC_LABEL_SEVERITY" > "`+dir+`/memory.out"
echo repaired memory
`)
	cpu := writeScript(t, dir, "cpu.sh", `echo cpu > "`+dir+`/cpu.out"`+"\n")
	esc := ""
	if webhook != "" {
		esc = fmt.Sprintf("escalate {\n    webhook = %q\n    timeout = \"5s\"\n  }", webhook)
	}
	return fmt.Sprintf(`
agent "ops" {
  node    = "web-01"
  pidfile = "%[1]s/ops.pid"
  start   = ["true"]
  stop    = ["true"]
  workdir = "%[1]s"
  probe "tcp" {
    address = "127.0.0.1:1"
  }
}

agent "elsewhere" {
  node    = "web-02"
  pidfile = "%[1]s/x.pid"
  start   = ["true"]
  stop    = ["true"]
}

runbook "agent-recovery" {
  match { alertname = "MedicAgentDown" }
  cause "memory" {
    when    = usage.memory > agent.thresholds.memory
    repair  = ["%[2]s"]
    timeout = "5s"
  }
  cause "cpu" {
    when   = usage.cpu > agent.thresholds.cpu
    repair = ["%[3]s"]
  }
  verify {
    attempts = 3
    interval = "2s"
  }
  budget {
    restarts = 3
    window   = "1h"
  }
  %[4]s
}
`, dir, mem, cpu, esc)
}

type webhookSink struct {
	mu    sync.Mutex
	got   []Escalation
	agent []string
	srv   *httptest.Server
}

func newWebhookSink(t testing.TB) *webhookSink {
	w := &webhookSink{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e Escalation
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.got = append(w.got, e)
		w.agent = append(w.agent, r.Header.Get("User-Agent"))
		w.mu.Unlock()
		rw.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookSink) Got() []Escalation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Escalation(nil), w.got...)
}

func TestLifecycle(t *testing.T) {
	tests := []struct {
		name      string
		agents    *fakeAgents
		outcome   string
		steps     []string
		causes    []string
		calls     []string
		files     []string // repair outputs that must exist
		noFiles   []string // and must not
		escalated bool
	}{
		{
			name:    "dead agent is restarted and verified",
			agents:  &fakeAgents{alive: false},
			outcome: OutcomeRecovered,
			steps:   []string{"liveness", "restart", "verify 1/3"},
			calls:   []string{"alive", "restart", "probe"},
			noFiles: []string{"memory.out", "cpu.out"},
		},
		{
			name:    "alive and probe passes: healthy, nothing touched",
			agents:  &fakeAgents{alive: true, probeOK: true, usage: hcl.Usage{Memory: 0.95}},
			outcome: OutcomeHealthy,
			steps:   []string{"liveness", "probe"},
			calls:   []string{"alive", "probe"},
			noFiles: []string{"memory.out", "cpu.out"},
		},
		{
			name:    "probe fails with memory high: repair, restart, verify",
			agents:  &fakeAgents{alive: true, usage: hcl.Usage{Memory: 0.91, CPU: 0.1, Disk: 0.5}},
			outcome: OutcomeRecovered,
			steps:   []string{"liveness", "probe", "diagnose", "repair:memory", "restart", "verify 1/3"},
			causes:  []string{"memory"},
			calls:   []string{"alive", "probe", "usage", "restart", "probe"},
			files:   []string{"memory.out"},
			noFiles: []string{"cpu.out"},
		},
		{
			name:    "two causes both repaired in runbook order",
			agents:  &fakeAgents{alive: true, usage: hcl.Usage{Memory: 0.91, CPU: 0.95}},
			outcome: OutcomeRecovered,
			steps:   []string{"liveness", "probe", "diagnose", "repair:memory", "repair:cpu", "restart", "verify 1/3"},
			causes:  []string{"memory", "cpu"},
			calls:   []string{"alive", "probe", "usage", "restart", "probe"},
			files:   []string{"memory.out", "cpu.out"},
		},
		{
			name:    "probe fails, no cause matched: restart alone",
			agents:  &fakeAgents{alive: true, usage: hcl.Usage{Memory: 0.2, CPU: 0.1, Disk: 0.3}},
			outcome: OutcomeRecovered,
			steps:   []string{"liveness", "probe", "diagnose", "restart", "verify 1/3"},
			calls:   []string{"alive", "probe", "usage", "restart", "probe"},
			noFiles: []string{"memory.out", "cpu.out"},
		},
		{
			name:      "still failing after verify: escalated",
			agents:    &fakeAgents{alive: true, stillBroken: true},
			outcome:   OutcomeEscalated,
			steps:     []string{"liveness", "probe", "diagnose", "restart", "verify 1/3", "verify 2/3", "verify 3/3", "escalate"},
			calls:     []string{"alive", "probe", "usage", "restart", "probe", "probe", "probe"},
			escalated: true,
		},
		{
			name:      "restart fails: escalated",
			agents:    &fakeAgents{alive: false, restartErr: errors.New("start: exit status 1")},
			outcome:   OutcomeEscalated,
			steps:     []string{"liveness", "restart", "escalate"},
			calls:     []string{"alive", "restart"},
			escalated: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sink := newWebhookSink(t)
			cfg := loadConfig(t, recoveryConfig(t, dir, sink.srv.URL+"/hook"))
			clock := newFakeClock()
			agents := tt.agents
			reg := prometheus.NewPedanticRegistry()
			e := New(Options{
				Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents,
				Registerer: reg, Now: clock.Now, Sleep: clock.Sleep,
			})
			rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
			if rec.Outcome != tt.outcome {
				t.Fatalf("outcome %q (%s), want %q; steps %v", rec.Outcome, rec.Reason, tt.outcome, stepNames(rec))
			}
			if diff := cmp.Diff(tt.steps, stepNames(rec)); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.causes, rec.Causes); diff != "" {
				t.Errorf("causes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.calls, agents.Calls()); diff != "" {
				t.Errorf("agent calls (-want +got):\n%s", diff)
			}
			if rec.Runbook != "agent-recovery" || rec.Agent != "ops" || rec.Node != "web-01" || rec.ID == "" {
				t.Errorf("record identity: %+v", rec)
			}
			for _, f := range tt.files {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("repair output %s: %v", f, err)
				}
			}
			for _, f := range tt.noFiles {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Errorf("%s exists: a repair ran that should not have", f)
				}
			}
			if got := len(sink.Got()); (got > 0) != tt.escalated {
				t.Errorf("webhook received %d escalations, escalated=%v", got, tt.escalated)
			}
			if got := testutil.ToFloat64(e.metrics.runs.WithLabelValues("agent-recovery", tt.outcome)); got != 1 {
				t.Errorf("medic_remediations_total{outcome=%q} = %v", tt.outcome, got)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("lint: %v %v", problems, err)
			}
		})
	}
}

func TestRepairSeesLabelsAndRunAsEnvironment(t *testing.T) {
	dir := t.TempDir()
	cfg := loadConfig(t, recoveryConfig(t, dir, ""))
	agents := &fakeAgents{alive: true, usage: hcl.Usage{Memory: 0.99}}
	clock := newFakeClock()
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents, Now: clock.Now, Sleep: clock.Sleep})
	rec := e.Run(context.Background(), Request{ID: "run-1", Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeRecovered {
		t.Fatalf("outcome %s: %s", rec.Outcome, rec.Reason)
	}
	got, err := os.ReadFile(filepath.Join(dir, "memory.out"))
	if err != nil {
		t.Fatal(err)
	}
	want := "cause=memory agent=ops node=web-01 run=run-1 sev=page\n"
	if string(got) != want {
		t.Errorf("repair saw %q, want %q", got, want)
	}
	rep := rec.Steps[3]
	if rep.Name != "repair:memory" || rep.ExitCode == nil || *rep.ExitCode != 0 || rep.Output != "repaired memory\n" || !rep.OK {
		t.Errorf("repair step %+v", rep)
	}
	if rec.Usage == nil || rec.Usage.Memory != 0.99 {
		t.Errorf("usage not recorded: %+v", rec.Usage)
	}
}

func TestSkipped(t *testing.T) {
	dir := t.TempDir()
	cfg := loadConfig(t, recoveryConfig(t, dir, ""))
	tests := []struct {
		name, runbook, agent, alertname, outcome, reason string
	}{
		// An alert job for an agent this node does not run: nothing acts,
		// so it is unroutable and escalated, never just skipped.
		{"agent on another node", "", "elsewhere", "MedicAgentDown", OutcomeUnroutable, `agent "elsewhere" does not run on node "web-01"`},
		{"unknown agent", "", "ghost", "MedicAgentDown", OutcomeUnroutable, `no agent called "ghost" is configured`},
		{"no runbook matches", "", "ops", "SomethingElse", OutcomeSkipped, "no runbook matches the alert"},
		{"unknown runbook", "nope", "ops", "MedicAgentDown", OutcomeFailed, `no runbook called "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agents := &fakeAgents{}
			e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents})
			rec := e.Run(context.Background(), Request{Runbook: tt.runbook, Alert: alertFor(tt.agent, tt.alertname)})
			if rec.Outcome != tt.outcome || !strings.Contains(rec.Reason, tt.reason) {
				t.Errorf("got %s %q, want %s %q", rec.Outcome, rec.Reason, tt.outcome, tt.reason)
			}
			if len(agents.Calls()) != 0 {
				t.Errorf("agent touched: %v", agents.Calls())
			}
			escalated := slices.ContainsFunc(rec.Steps, func(s Step) bool { return s.Name == "escalate" })
			if want := tt.outcome == OutcomeUnroutable; escalated != want {
				t.Errorf("escalated = %v, want %v (steps %v)", escalated, want, rec.Steps)
			}
		})
	}
}

func TestLeaseHeldSkips(t *testing.T) {
	dir := t.TempDir()
	cfg := loadConfig(t, recoveryConfig(t, dir, ""))
	locker := NewMemoryLocker()
	release, ok, _ := locker.TryLock(context.Background(), LeaseKey("web-01", "ops"), time.Minute)
	if !ok {
		t.Fatal("first lock failed")
	}
	agents := &fakeAgents{}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents, Locker: locker})
	rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeSkipped || !strings.Contains(rec.Reason, "another run holds the lease") {
		t.Fatalf("got %s %q", rec.Outcome, rec.Reason)
	}
	if len(agents.Calls()) != 0 {
		t.Errorf("agent touched while another run holds the lease: %v", agents.Calls())
	}
	release()
	rec = e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeRecovered {
		t.Fatalf("after release: %s %q", rec.Outcome, rec.Reason)
	}
}

func TestWatchdogUsesBuiltInRunbook(t *testing.T) {
	cfg := loadConfig(t, `
agent "sup" {
  command = ["sleep", "100"]
}
`)
	clock := newFakeClock()
	agents := &fakeAgents{}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "any", Agents: agents, Now: clock.Now, Sleep: clock.Sleep})
	rec := e.Run(context.Background(), Request{Agent: "sup", Trigger: TriggerWatchdog,
		Alert: alert.Alert{Labels: map[string]string{"alertname": "MedicWatchdog", "agent": "sup"}, Status: "firing"}})
	if rec.Outcome != OutcomeRecovered || rec.Runbook != WatchdogRunbook || rec.Trigger != TriggerWatchdog {
		t.Fatalf("got %s %q runbook %q", rec.Outcome, rec.Reason, rec.Runbook)
	}
	// No probe: verify is liveness.
	if diff := cmp.Diff([]string{"liveness", "restart", "verify 1/3"}, stepNames(rec)); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"alive", "restart", "alive"}, agents.Calls()); diff != "" {
		t.Error(diff)
	}
}

func TestBudgetAndBackoff(t *testing.T) {
	dir := t.TempDir()
	sink := newWebhookSink(t)
	cfg := loadConfig(t, recoveryConfig(t, dir, sink.srv.URL))
	clock := newFakeClock()
	agents := &fakeAgents{}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents, Now: clock.Now, Sleep: clock.Sleep})
	crash := func() *RunRecord {
		agents.mu.Lock()
		agents.alive = false
		agents.mu.Unlock()
		return e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	}
	// Three crashes, one second apart: the budget allows three restarts
	// in an hour; the 2nd waits 1s after the 1st, the 3rd 2s after the 2nd.
	for i := 1; i <= 3; i++ {
		if rec := crash(); rec.Outcome != OutcomeRecovered {
			t.Fatalf("crash %d: %s %q", i, rec.Outcome, rec.Reason)
		}
		clock.Advance(100 * time.Millisecond)
	}
	if diff := cmp.Diff([]time.Duration{900 * time.Millisecond, 1900 * time.Millisecond}, clock.Slept()); diff != "" {
		t.Errorf("backoff sleeps (-want +got):\n%s", diff)
	}
	rec := crash()
	if rec.Outcome != OutcomeEscalated || rec.Reason != "restart budget exhausted: 3 in 1h" {
		t.Fatalf("4th crash: %s %q", rec.Outcome, rec.Reason)
	}
	if diff := cmp.Diff([]string{"liveness", "budget", "escalate"}, stepNames(rec)); diff != "" {
		t.Error(diff)
	}
	if n := strings.Count(strings.Join(agents.Calls(), " "), "restart"); n != 3 {
		t.Errorf("%d restarts, want 3", n)
	}
	got := sink.Got()
	if len(got) != 1 || got[0].Reason != "restart budget exhausted: 3 in 1h" || got[0].Run.Outcome != OutcomeEscalated ||
		got[0].Run.ID != rec.ID || got[0].Alert.Labels["agent"] != "ops" || sink.agent[0] != "medic" {
		t.Errorf("webhook got %+v", got)
	}
	// An hour later the window is empty again, and the streak has reset:
	// no backoff.
	clock.Advance(time.Hour)
	before := len(clock.Slept())
	if rec := crash(); rec.Outcome != OutcomeRecovered {
		t.Fatalf("after the window: %s %q", rec.Outcome, rec.Reason)
	}
	if len(clock.Slept()) != before {
		t.Errorf("backoff after a healthy hour: %v", clock.Slept()[before:])
	}
}

func TestBackoffSchedule(t *testing.T) {
	b := newBudgets(time.Second, 8*time.Second, 10*time.Minute)
	budget := hcl.Budget{Restarts: 100, Window: time.Hour}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var waits []time.Duration
	for range 7 {
		wait, exhausted := b.reserve("a", budget, now)
		if exhausted != "" {
			t.Fatal(exhausted)
		}
		waits = append(waits, wait)
		now = now.Add(wait)
		b.record("a", now)
	}
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if diff := cmp.Diff(want, waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	// Ten quiet minutes end the streak.
	now = now.Add(10 * time.Minute)
	if wait, _ := b.reserve("a", budget, now); wait != 0 {
		t.Errorf("wait after a healthy period: %s", wait)
	}
	// A restart spaced wider than its backoff does not wait either.
	b.record("a", now)
	now = now.Add(5 * time.Second)
	if wait, _ := b.reserve("a", budget, now); wait != 0 {
		t.Errorf("wait when spaced out: %s", wait)
	}
}

// processGone reports whether pid no longer exists (or is a zombie waiting
// for init to reap it), polling for up to d.
func processGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRepairTimeoutKillsWholeGroup(t *testing.T) {
	dir := t.TempDir()
	// The script backgrounds a grandchild that would outlive it, records its
	// pid and then hangs; medic must kill both when the timeout hits.
	hang := writeScript(t, dir, "hang.sh", `sleep 300 &
echo $! > "`+dir+`/grandchild.pid"
echo started
sleep 300
`)
	cfg := loadConfig(t, fmt.Sprintf(`
agent "ops" {
  pidfile = "%[1]s/ops.pid"
  start   = ["true"]
  probe "tcp" {
    address = "127.0.0.1:1"
  }
}
runbook "r" {
  match { alertname = "MedicAgentDown" }
  cause "always" {
    when    = true
    repair  = ["%[2]s"]
    timeout = "500ms"
  }
}
`, dir, hang))
	agents := &fakeAgents{alive: true}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: agents, KillGrace: -1})
	start := time.Now()
	rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("run took %s: the timeout did not stop the script", took)
	}
	if rec.Outcome != OutcomeRecovered {
		t.Fatalf("outcome %s %q", rec.Outcome, rec.Reason)
	}
	rep := rec.Steps[3]
	if rep.Name != "repair:always" || rep.OK || !strings.Contains(rep.Detail, "timed out after 500ms") || rep.Output != "started\n" {
		t.Errorf("repair step %+v", rep)
	}
	b, err := os.ReadFile(filepath.Join(dir, "grandchild.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		t.Fatalf("grandchild pid %q", b)
	}
	if !processGone(pid, 2*time.Second) {
		t.Errorf("grandchild %d survived the repair timeout", pid)
	}
	// The restart still happened: a failed repair does not stop recovery.
	if diff := cmp.Diff([]string{"alive", "probe", "usage", "restart", "probe"}, agents.Calls()); diff != "" {
		t.Error(diff)
	}
}

// Label values are data: a shell metacharacter in one reaches the script
// verbatim in MEDIC_LABEL_*, and nothing runs it.
func TestHostileLabelsRunNothing(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "x")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	pwned := filepath.Join(dir, "pwned")
	_, tmpPwnedBefore := os.Stat("/tmp/pwned")
	// The script uses every label the way a careless script would: inside
	// a quoted string. It still does not evaluate it.
	record := writeScript(t, dir, "record.sh", `printf '%s\n' "$MEDIC_LABEL_EVIL" "$MEDIC_LABEL_RM" "$MEDIC_LABEL_LOCAL" "$MEDIC_LABEL_WEIRD_NAME_" > "`+dir+`/labels.out"
`)
	cfg := loadConfig(t, fmt.Sprintf(`
agent "ops" {
  pidfile = "%[1]s/ops.pid"
  start   = ["true"]
  probe "tcp" {
    address = "127.0.0.1:1"
  }
}
runbook "r" {
  match { alertname = "MedicAgentDown" }
  cause "always" {
    when   = true
    repair = ["%[2]s"]
  }
  escalate {
    command = ["%[2]s"]
  }
}
`, dir, record))
	labels := map[string]string{
		"alertname":   "MedicAgentDown",
		"agent":       "ops",
		"evil":        "$(touch /tmp/pwned)",
		"rm":          "; rm -rf " + victim,
		"local":       "`touch " + pwned + "` && touch " + pwned,
		"weird-name!": "$(touch " + pwned + ")",
	}
	agents := &fakeAgents{alive: true, stillBroken: true}
	clock := newFakeClock()
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: agents, Now: clock.Now, Sleep: clock.Sleep})
	rec := e.Run(context.Background(), Request{Alert: alert.Alert{Labels: labels, Status: "firing"}})
	if rec.Outcome != OutcomeEscalated {
		t.Fatalf("outcome %s %q", rec.Outcome, rec.Reason)
	}
	got, err := os.ReadFile(filepath.Join(dir, "labels.out"))
	if err != nil {
		t.Fatal(err)
	}
	want := labels["evil"] + "\n" + labels["rm"] + "\n" + labels["local"] + "\n" + labels["weird-name!"] + "\n"
	if string(got) != want {
		t.Errorf("script saw\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("%s was removed: %v", victim, err)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Errorf("%s was created", pwned)
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil && tmpPwnedBefore != nil {
		t.Errorf("/tmp/pwned was created")
	}
}

func TestEscalationCommandReadsRecord(t *testing.T) {
	dir := t.TempDir()
	esc := writeScript(t, dir, "page.sh", `cat > "`+dir+`/stdin.json"
echo "agent=$MEDIC_AGENT run=$MEDIC_RUN_ID" > "`+dir+`/env.out"
exit 3
`)
	sink := newWebhookSink(t)
	cfg := loadConfig(t, fmt.Sprintf(`
agent "ops" {
  pidfile = "%[1]s/ops.pid"
  start   = ["true"]
}
runbook "r" {
  match { alertname = "MedicAgentDown" }
  verify {
    attempts = 2
    interval = "1s"
  }
  escalate {
    webhook   = "%[3]s"
    command   = ["%[2]s"]
    retry_for = "0s"
  }
}
`, dir, esc, sink.srv.URL))
	agents := &fakeAgents{restartErr: errors.New("boom")}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: agents})
	rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeEscalated || rec.Reason != "restart failed: boom" {
		t.Fatalf("outcome %s %q", rec.Outcome, rec.Reason)
	}
	if diff := cmp.Diff([]string{"liveness", "restart", "escalate", "escalate"}, stepNames(rec)); diff != "" {
		t.Fatal(diff)
	}
	web, cmdStep := rec.Steps[2], rec.Steps[3]
	if !web.OK || !strings.Contains(web.Detail, "202") {
		t.Errorf("webhook step %+v", web)
	}
	if cmdStep.OK || cmdStep.ExitCode == nil || *cmdStep.ExitCode != 3 {
		t.Errorf("command step %+v", cmdStep)
	}
	var got Escalation
	b, err := os.ReadFile(filepath.Join(dir, "stdin.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("stdin is not the escalation JSON: %v\n%s", err, b)
	}
	if got.Run.ID != rec.ID || got.Run.Outcome != OutcomeEscalated || got.Reason != "restart failed: boom" || got.Alert.Fingerprint != "abc123" {
		t.Errorf("escalation %+v", got)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "env.out"))
	if string(env) != "agent=ops run="+rec.ID+"\n" {
		t.Errorf("env %q", env)
	}
	if len(sink.Got()) != 1 {
		t.Errorf("webhook got %d", len(sink.Got()))
	}
}

func TestEscalationWebhookFailureIsRecorded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
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
    retry_for = "0s"
  }
}
`, srv.URL))
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: &fakeAgents{restartErr: errors.New("boom")}})
	rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	last := rec.Steps[len(rec.Steps)-1]
	if rec.Outcome != OutcomeEscalated || last.Name != "escalate" || last.OK || last.Error != "webhook answered 500" || last.Output != "nope" {
		t.Errorf("outcome %s, step %+v", rec.Outcome, last)
	}
}

type fakeSwitcher struct {
	pool, from string
	err        error
}

func (f *fakeSwitcher) Switchover(_ context.Context, pool, from string) (string, error) {
	f.pool, f.from = pool, from
	return "moved 3 messages to cfg-2", f.err
}

func TestSwitchover(t *testing.T) {
	cfg := loadConfig(t, `
agent "cfg-1" {
  node    = "elsewhere"
  pidfile = "/nonexistent.pid"
  start   = ["true"]
}
pool "switches" {
  agents     = ["cfg-1"]
  device_url = "http://${device}/api"
}
runbook "pool-switchover" {
  match { alertname = "MedicPoolAgentDown" }
  switchover { pool = alert.labels.pool }
}
`)
	alert := alert.Alert{Labels: map[string]string{"alertname": "MedicPoolAgentDown", "agent": "cfg-1", "pool": "switches"}, Status: "firing"}
	for _, tt := range []struct {
		name    string
		sw      *fakeSwitcher
		outcome string
	}{
		{"switched", &fakeSwitcher{}, OutcomeSwitched},
		{"switch fails: escalated", &fakeSwitcher{err: errors.New("no healthy agent")}, OutcomeEscalated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			agents := &fakeAgents{}
			// The agent's lease is held (its restart is running): the
			// switchover does not wait for it or skip.
			locker := NewMemoryLocker()
			if _, ok, _ := locker.TryLock(context.Background(), LeaseKey("n", "cfg-1"), time.Minute); !ok {
				t.Fatal("lock")
			}
			e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: agents, Switcher: tt.sw, Locker: locker})
			rec := e.Run(context.Background(), Request{Alert: alert})
			if rec.Outcome != tt.outcome {
				t.Fatalf("outcome %s %q", rec.Outcome, rec.Reason)
			}
			if tt.sw.pool != "switches" || tt.sw.from != "cfg-1" {
				t.Errorf("switchover(%q, %q)", tt.sw.pool, tt.sw.from)
			}
			if len(agents.Calls()) != 0 {
				t.Errorf("a switchover touched the local agent: %v", agents.Calls())
			}
		})
	}
}

func TestRunIDsSortByTime(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 2, 3, 4_000_000, time.UTC)
	a, b := NewRunID(t0), NewRunID(t0.Add(time.Millisecond))
	if !(a < b) || a == NewRunID(t0) {
		t.Errorf("ids %s %s", a, b)
	}
	if !strings.HasPrefix(a, "20261122T010203004-") {
		t.Errorf("id %s", a)
	}
}

// A run whose context ends (node shutting down) fails; it does not
// escalate an agent that medic stopped looking at.
func TestCancelledRunDoesNotEscalate(t *testing.T) {
	dir := t.TempDir()
	sink := newWebhookSink(t)
	cfg := loadConfig(t, recoveryConfig(t, dir, sink.srv.URL))
	ctx, cancel := context.WithCancel(context.Background())
	agents := &cancellingAgents{fakeAgents: fakeAgents{alive: true}, cancel: cancel}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents})
	rec := e.Run(ctx, Request{Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeFailed || !strings.Contains(rec.Reason, "cancelled") {
		t.Fatalf("outcome %s %q", rec.Outcome, rec.Reason)
	}
	if len(sink.Got()) != 0 {
		t.Errorf("escalated a cancelled run")
	}
	if strings.Contains(strings.Join(agents.Calls(), " "), "restart") {
		t.Errorf("restarted after cancel: %v", agents.Calls())
	}
}

// cancellingAgents cancels the run's context during the probe.
type cancellingAgents struct {
	fakeAgents
	cancel func()
}

func (c *cancellingAgents) Probe(ctx context.Context, agent string) (bool, string, error) {
	c.cancel()
	return c.fakeAgents.Probe(ctx, agent)
}

func TestPoolInfoMetric(t *testing.T) {
	cfg := loadConfig(t, `
agent "cfg-1" {
  node    = "n1"
  command = ["sleep", "100"]
}
agent "cfg-2" {
  node    = "n2"
  command = ["sleep", "100"]
}
agent "solo" {
  command = ["sleep", "100"]
}
pool "switches" {
  agents     = ["cfg-1", "cfg-2"]
  device_url = "http://${device}/api"
}
`)
	reg := prometheus.NewPedanticRegistry()
	// The remediation metrics are built once per process and shared; a
	// second engine on the same registry (medic serve) is no error.
	m := NewMetrics(reg)
	New(Options{Config: func() *hcl.Config { return cfg }, Node: "n1", Agents: &fakeAgents{}, Registerer: reg, Metrics: m})
	New(Options{Config: func() *hcl.Config { return cfg }, Node: "n1", Agents: &fakeAgents{}, Registerer: reg, Metrics: m})
	want := `# HELP medic_agent_pool_info 1 for every config-dispatch pool an agent of this node belongs to (the join that gives MedicPoolAgentDown its pool label).
# TYPE medic_agent_pool_info gauge
medic_agent_pool_info{agent="cfg-1",node="n1",pool="switches"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "medic_agent_pool_info"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

type brokenLocker struct{}

func (brokenLocker) TryLock(context.Context, string, time.Duration) (func(), bool, error) {
	return nil, false, errors.New("dial tcp 127.0.0.1:6379: connection refused")
}

// Without Redis a node still restarts its own agents, under its own lease.
func TestSharedLeaseDownDegradesToLocal(t *testing.T) {
	dir := t.TempDir()
	cfg := loadConfig(t, recoveryConfig(t, dir, ""))
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: &fakeAgents{}, Locker: brokenLocker{}})
	rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeRecovered {
		t.Fatalf("outcome %s %q", rec.Outcome, rec.Reason)
	}
	if rec.Steps[0].Name != "lease" || rec.Steps[0].OK || !strings.Contains(rec.Steps[0].Error, "connection refused") {
		t.Errorf("degraded lease not recorded: %+v", rec.Steps[0])
	}
}

// Two runs for one agent in one engine (watchdog and job consumer) never
// overlap, with no shared locker at all.
func TestInProcessLease(t *testing.T) {
	cfg := loadConfig(t, `
agent "ops" {
  pidfile = "/nonexistent.pid"
  start   = ["true"]
}
runbook "r" {
  match { alertname = "MedicAgentDown" }
}
`)
	entered := make(chan struct{})
	unblock := make(chan struct{})
	agents := &blockingAgents{entered: entered, unblock: unblock}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: agents})
	first := make(chan *RunRecord)
	go func() { first <- e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")}) }()
	<-entered
	second := e.Run(context.Background(), Request{Trigger: TriggerWatchdog, Alert: alertFor("ops", "MedicAgentDown")})
	close(unblock)
	if second.Outcome != OutcomeSkipped || second.HeldBy == "" || second.Reason != "run "+second.HeldBy+" holds the lease of agent ops on node n and is still running" {
		t.Errorf("second run: %s %q", second.Outcome, second.Reason)
	}
	if rec := <-first; rec.Outcome != OutcomeRecovered {
		t.Errorf("first run: %s %q", rec.Outcome, rec.Reason)
	}
}

// blockingAgents is dead; its restart blocks until unblock closes.
type blockingAgents struct {
	entered, unblock chan struct{}
	once             sync.Once
	restarted        bool
	mu               sync.Mutex
}

func (b *blockingAgents) Alive(context.Context, string) (bool, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.restarted, "", nil
}
func (b *blockingAgents) Probe(context.Context, string) (bool, string, error) { return true, "", nil }
func (b *blockingAgents) Usage(context.Context, string) (hcl.Usage, error)    { return hcl.Usage{}, nil }
func (b *blockingAgents) Restart(context.Context, string) error {
	b.once.Do(func() { close(b.entered) })
	<-b.unblock
	b.mu.Lock()
	b.restarted = true
	b.mu.Unlock()
	return nil
}

// Every alert of deploy/prometheus/medic-rules.yml but those for humans
// only has a runbook in the library that matches it, and the engine runs
// it end to end.
func TestRulesAndLibraryAgree(t *testing.T) {
	rules, err := os.ReadFile("../deploy/prometheus/medic-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var alertnames []string
	for _, line := range strings.Split(string(rules), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: "); ok {
			alertnames = append(alertnames, name)
		}
	}
	if len(alertnames) != 8 {
		t.Fatalf("found alerts %v", alertnames)
	}
	// A blocked device waits for an operator's retry or skip: its alert
	// pages humans and no runbook acts on it.
	humansOnly := map[string]bool{"MedicDeviceBlocked": true}
	srcs, diags := hcl.ReadSources("library")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	srcs = append(srcs, hcl.Source{Name: "agents.hcl", Bytes: []byte(`
agent "ops" {
  node    = "web-01"
  pidfile = "/nonexistent.pid"
  start   = ["true"]
}
pool "switches" {
  agents     = ["ops"]
  device_url = "http://${device}/api"
}
`)})
	cfg, diags := hcl.LoadSources(srcs)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	want := map[string]string{
		"MedicAgentHeartbeatMissed": "heartbeat-restart",
		"MedicPoolAgentDown":        "pool-switchover",
	}
	for _, name := range alertnames {
		alert := alert.Alert{Labels: map[string]string{"alertname": name, "agent": "ops", "node": "web-01", "pool": "switches"}, Status: "firing"}
		rb, _ := cfg.Match(alert)
		if humansOnly[name] {
			if rb != nil {
				t.Errorf("%s is for humans, but runbook %s matches it", name, rb.Name)
			}
			continue
		}
		wantRB := want[name]
		if wantRB == "" {
			wantRB = "agent-recovery"
		}
		if rb == nil || rb.Name != wantRB {
			t.Errorf("%s: runbook %v, want %s", name, rb, wantRB)
			continue
		}
		e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: &fakeAgents{}, Switcher: &fakeSwitcher{}})
		rec := e.Run(context.Background(), Request{Alert: alert})
		wantOutcome := OutcomeRecovered
		if rb.Switchover != nil {
			wantOutcome = OutcomeSwitched
		}
		if rec.Outcome != wantOutcome {
			t.Errorf("%s: outcome %s %q", name, rec.Outcome, rec.Reason)
		}
	}
}

// budget { restarts = 0 } means never restart: the first crash escalates.
func TestBudgetZeroNeverRestarts(t *testing.T) {
	cfg := loadConfig(t, `
agent "ops" {
  node    = "web-01"
  command = ["/bin/true"]
}
runbook "r" {
  match {
    alertname = "MedicAgentDown"
  }
  budget {
    restarts = 0
  }
}
`)
	agents := &fakeAgents{}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents})
	rec := e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeEscalated || rec.Reason != "restart budget exhausted: 0 in 1h" {
		t.Fatalf("outcome %s %q, want escalated for an empty budget", rec.Outcome, rec.Reason)
	}
	if calls := strings.Join(agents.Calls(), " "); strings.Contains(calls, "restart") {
		t.Errorf("restarted with restarts = 0: %s", calls)
	}
}
