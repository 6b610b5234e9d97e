package exporter

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/probe"
	"github.com/medicops/medic/runbooks"
)

func TestHeartbeatOverdue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		hb   heartbeat
		now  time.Time
		want bool
	}{
		{"unregistered", heartbeat{}, t0.Add(time.Hour), false},
		{"fresh", heartbeat{registered: true, timeout: 15 * time.Second, last: t0}, t0.Add(10 * time.Second), false},
		{"exactly at timeout", heartbeat{registered: true, timeout: 15 * time.Second, last: t0}, t0.Add(15 * time.Second), false},
		{"overdue", heartbeat{registered: true, timeout: 15 * time.Second, last: t0}, t0.Add(16 * time.Second), true},
		{"no timeout", heartbeat{registered: true, last: t0}, t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, detail := tt.hb.overdue(tt.now)
			if got != tt.want {
				t.Fatalf("overdue = %v (%s), want %v", got, detail, tt.want)
			}
		})
	}
}

// fakeClock is an injected clock for the heartbeat state machine.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestHeartbeatAPI(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	pass := &hcl.Probe{Kind: probe.Exec, Command: []string{"true"}, Timeout: time.Second}
	ext := &hcl.Agent{Name: "ext", Pidfile: "/nonexistent/ext.pid", Probe: pass}
	cfgd := &hcl.Agent{Name: "cfgd", Pidfile: "/nonexistent/cfgd.pid", Probe: pass, Heartbeat: &hcl.Heartbeat{Timeout: 7 * time.Second}}
	n := startNode(t, Options{Config: configOf(ext, cfgd), Now: clock.Now, CheckInterval: time.Hour}, nil)
	url := n.URL + "/api/v1/heartbeats/"

	tests := []struct {
		method, agent, body string
		code                int
		contains            string
	}{
		{"PUT", "nobody", `{"timeout":"15s"}`, 404, `"error"`},
		{"DELETE", "nobody", ``, 404, `"error"`},
		{"PUT", "ext", `{}`, 400, "no heartbeat timeout"},
		{"PUT", "ext", `{"timeout":"soon"}`, 400, "invalid timeout"},
		{"PUT", "ext", `{"timeout":"-1s"}`, 400, "invalid timeout"},
		{"PUT", "ext", `not json`, 400, "invalid JSON"},
		{"PUT", "ext", `{"timeout":"` + strings.Repeat("x", 5000) + `"}`, 413, "body over"},
		{"PUT", "ext", `{"timeout":"15s"}`, 200, `"timeout":"15s"`},
		{"PUT", "ext", ``, 200, `"timeout":"15s"`}, // a beat keeps the registered timeout
		{"PUT", "cfgd", ``, 200, `"timeout":"7s"`}, // the HCL heartbeat block's timeout
	}
	for _, tt := range tests {
		code, body := call(t, tt.method, url+tt.agent, tt.body)
		if code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("%s %s %.40q = %d %s, want %d containing %s", tt.method, tt.agent, tt.body, code, body, tt.code, tt.contains)
		}
	}

	ctx := context.Background()
	clock.Add(10 * time.Second)
	if ok, detail, _ := n.Probe(ctx, "ext"); !ok {
		t.Errorf("ext 10s after a 15s beat: probe failed: %s", detail)
	}
	if ok, detail, _ := n.Probe(ctx, "cfgd"); ok || !strings.Contains(detail, "heartbeat overdue") {
		t.Errorf("cfgd 10s after a 7s beat: probe ok=%v %s", ok, detail)
	}
	clock.Add(6 * time.Second)
	if ok, detail, _ := n.Probe(ctx, "ext"); ok || !strings.Contains(detail, "heartbeat overdue") {
		t.Errorf("ext 16s after a 15s beat: probe ok=%v %s", ok, detail)
	}
	if code, _ := call(t, "DELETE", url+"ext", ""); code != 200 {
		t.Fatalf("DELETE = %d", code)
	}
	if ok, detail, _ := n.Probe(ctx, "ext"); strings.Contains(detail, "heartbeat") {
		t.Errorf("unregistered ext still judged by heartbeat: %v %s", ok, detail)
	}
}

// engineLike does what the engine does for a watchdog run: liveness,
// probe, and a restart when either fails. It records what it saw.
type engineLike struct {
	node *Node
	mu   sync.Mutex
	seen []string
	reqs []runbooks.Request
}

func (e *engineLike) Run(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
	alive, aliveDetail, _ := e.node.Alive(ctx, req.Agent)
	ok, probeDetail, _ := e.node.Probe(ctx, req.Agent)
	e.mu.Lock()
	e.reqs = append(e.reqs, req)
	e.seen = append(e.seen, aliveDetail+" | "+probeDetail)
	e.mu.Unlock()
	rec := &runbooks.RunRecord{Agent: req.Agent, Trigger: req.Trigger, Outcome: runbooks.OutcomeHealthy}
	if !alive || !ok {
		rec.Outcome = runbooks.OutcomeRecovered
		if err := e.node.Restart(ctx, req.Agent); err != nil {
			rec.Outcome, rec.Error = runbooks.OutcomeFailed, err.Error()
		}
	}
	return rec
}

func (e *engineLike) runs() ([]runbooks.Request, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]runbooks.Request(nil), e.reqs...), append([]string(nil), e.seen...)
}

// hungRestart hangs a heartbeating test agent and measures from its last
// heartbeat until it runs again.
func hungRestart(t *testing.T, n *started, name, addr, cmd string, timeout time.Duration) (time.Duration, string) {
	t.Helper()
	a, _ := n.agent(name)
	first := n.pidOf(name)
	if code, _ := call(t, "POST", "http://"+addr+cmd, ""); code != 200 {
		t.Fatalf("%s: %d", cmd, code)
	}
	var lastBeat time.Time
	var restarted time.Time
	deadline := time.Now().Add(timeout + 5*time.Second)
	for time.Now().Before(deadline) {
		if id := n.pidOf(name); id.PID != 0 && id != first {
			restarted = time.Now()
			break
		}
		if hb := a.heartbeatState(); hb.registered && hb.last.After(lastBeat) {
			lastBeat = hb.last
		}
		time.Sleep(2 * time.Millisecond)
	}
	if restarted.IsZero() {
		t.Fatalf("%s not restarted within %s of %s", name, timeout+5*time.Second, cmd)
	}
	return restarted.Sub(lastBeat), a.heartbeatState().via
}

func TestHTTPHeartbeatMissedRestartsAgent(t *testing.T) {
	ln, nodeURL := listen(t)
	const timeout = time.Second
	def, addr := testAgent(t, "beater", "--heartbeat-url", nodeURL, "--heartbeat-timeout", timeout.String(), "--heartbeat-interval", "100ms")
	eng := &engineLike{}
	n := startNode(t, Options{Config: configOf(def), Runner: eng}, ln)
	eng.node = n.Node
	n.waitServing(t, "beater")
	waitFor(t, 5*time.Second, "registered over HTTP", func() bool {
		a, _ := n.agent("beater")
		hb := a.heartbeatState()
		return hb.registered && hb.via == "http"
	})

	took, _ := hungRestart(t, n, "beater", addr, "/hang", timeout)
	t.Logf("last heartbeat → restarted: %s (timeout %s)", took, timeout)
	if took > timeout+200*time.Millisecond {
		t.Errorf("restarted %s after the last heartbeat, want ≤ timeout + 200ms", took)
	}
	reqs, seen := eng.runs()
	if len(reqs) != 1 || reqs[0].Alert.Labels["alertname"] != "MedicAgentHeartbeatMissed" {
		t.Fatalf("runs = %+v", reqs)
	}
	if !strings.Contains(seen[0], "alive |") || !strings.Contains(seen[0], "heartbeat overdue") {
		t.Errorf("engine saw %q, want alive and hung", seen[0])
	}
	// The new process registers itself again.
	waitFor(t, 5*time.Second, "re-registered", func() bool {
		a, _ := n.agent("beater")
		hb := a.heartbeatState()
		return hb.registered && hb.via == "http"
	})
}

func TestSdNotifyWatchdogMissedRestartsAgent(t *testing.T) {
	const timeout = time.Second
	def, addr := testAgent(t, "systemdish")
	def.Heartbeat = &hcl.Heartbeat{Timeout: timeout}
	eng := &engineLike{}
	n := startNode(t, Options{Config: configOf(def), Runner: eng}, nil)
	eng.node = n.Node
	n.waitServing(t, "systemdish")
	a, _ := n.agent("systemdish")
	waitFor(t, 5*time.Second, "READY=1 and WATCHDOG=1", func() bool {
		hb := a.heartbeatState()
		a.mu.Lock()
		ready := a.ready
		a.mu.Unlock()
		return ready && hb.registered && hb.via == "sd_notify"
	})

	// The process keeps serving HTTP but stops pinging the watchdog.
	took, _ := hungRestart(t, n, "systemdish", addr, "/stop-heartbeat", timeout)
	t.Logf("last WATCHDOG=1 → restarted: %s (WATCHDOG_USEC %d)", took, timeout.Microseconds())
	if took > timeout+200*time.Millisecond {
		t.Errorf("restarted %s after the last WATCHDOG=1, want ≤ timeout + 200ms", took)
	}
	reqs, seen := eng.runs()
	if len(reqs) != 1 || reqs[0].Alert.Labels["alertname"] != "MedicAgentHeartbeatMissed" {
		t.Fatalf("runs = %+v", reqs)
	}
	if !strings.Contains(seen[0], "heartbeat overdue: last beat (sd_notify)") {
		t.Errorf("engine saw %q", seen[0])
	}
	waitFor(t, 5*time.Second, "new process pings", func() bool {
		hb := a.heartbeatState()
		return hb.via == "sd_notify"
	})
}

func TestSdNotifyMessages(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n, err := New(Options{Config: configOf(&hcl.Agent{Name: "a", Command: []string{"true"}}), NodeName: "n", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	a := n.agents["a"]
	steps := []struct {
		msg        string
		advance    time.Duration
		registered bool
		overdue    bool
	}{
		{"READY=1", 0, false, false},
		{"WATCHDOG=1", time.Hour, false, false}, // no timeout known: ignored, as systemd does
		{"WATCHDOG_USEC=2000000", 0, true, false},
		{"WATCHDOG=1", 1500 * time.Millisecond, true, false},
		{"", time.Second, true, true},
		{"WATCHDOG=1", 0, true, false},
		{"WATCHDOG=trigger", 0, true, true},
		{"STATUS=stopping\nSTOPPING=1", 0, false, false},
	}
	for i, s := range steps {
		a.handleNotify(s.msg)
		clock.Add(s.advance)
		hb := a.heartbeatState()
		over, _ := hb.overdue(clock.Now())
		if hb.registered != s.registered || over != s.overdue {
			t.Fatalf("step %d %q: registered=%v overdue=%v, want %v %v", i, s.msg, hb.registered, over, s.registered, s.overdue)
		}
	}
	if !a.ready {
		t.Error("READY=1 not recorded")
	}
}
