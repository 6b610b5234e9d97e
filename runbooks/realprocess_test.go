package runbooks_test

// These tests run the engine against real processes: the test agent
// (internal/testagent) supervised by the real exporter.Node, real repair
// scripts and a real webhook receiver.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/runbooks"
)

var testAgentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "medic-runbooks-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testAgentBin = filepath.Join(dir, "testagent")
	if out, err := exec.Command("go", "build", "-o", testAgentBin, "github.com/medicops/medic/internal/testagent").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testagent: %v\n%s", err, out)
		os.Exit(1)
	}
	before := goleak.IgnoreCurrent()
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Lease renewers, script waiters and nodes must all be gone.
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(before); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func memTotal(t *testing.T) float64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var kb float64
		if n, _ := fmt.Sscanf(s.Text(), "MemTotal: %f kB", &kb); n == 1 {
			return kb * 1024
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

// estate is one node running one supervised test agent, and an engine.
type estate struct {
	t      *testing.T
	dir    string
	port   int
	node   *exporter.Node
	engine *runbooks.Engine
	hooks  *hookSink
}

type estateOpts struct {
	agentArgs  string // extra testagent argv, HCL list items
	thresholds string // thresholds block body
	causes     string // cause blocks
	budget     string
	verify     string
}

type hookSink struct {
	mu  sync.Mutex
	got []runbooks.Escalation
	srv *httptest.Server
}

func (h *hookSink) Got() []runbooks.Escalation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]runbooks.Escalation(nil), h.got...)
}

func newEstate(t *testing.T, o estateOpts) *estate {
	t.Helper()
	e := &estate{t: t, dir: t.TempDir(), port: testport.Free(t)}
	e.hooks = &hookSink{}
	e.hooks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var esc runbooks.Escalation
		if err := json.Unmarshal(body, &esc); err != nil || r.Header.Get("User-Agent") != "medic" {
			http.Error(w, "bad escalation", http.StatusBadRequest)
			return
		}
		e.hooks.mu.Lock()
		e.hooks.got = append(e.hooks.got, esc)
		e.hooks.mu.Unlock()
	}))
	t.Cleanup(e.hooks.srv.Close)
	if o.verify == "" {
		o.verify = `attempts = 20
    interval = "100ms"`
	}
	if o.budget == "" {
		o.budget = `restarts = 10
    window = "1h"`
	}
	src := fmt.Sprintf(`
agent "ta" {
  node     = "n1"
  command  = ["%[1]s", "--listen=127.0.0.1:%[2]d"%[3]s]
  workdir  = "%[4]s/work"
  watchdog = false
  probe "http" {
    url     = "http://127.0.0.1:%[2]d/healthz"
    timeout = "300ms"
  }
  thresholds {
    %[5]s
  }
}

runbook "recover" {
  match { alertname = "MedicAgentDown" }
  %[6]s
  verify {
    %[7]s
  }
  budget {
    %[8]s
  }
  escalate {
    webhook = "%[9]s/hook"
    timeout = "2s"
  }
}
`, testAgentBin, e.port, o.agentArgs, e.dir, o.thresholds, o.causes, o.verify, o.budget, e.hooks.srv.URL)
	cfg, diags := hcl.LoadSources([]hcl.Source{{Name: "estate.hcl", Bytes: []byte(src)}})
	if diags.HasErrors() {
		t.Fatalf("config: %s\n%s", diags.Error(), src)
	}
	node, err := exporter.New(exporter.Options{Config: cfg, NodeName: "n1", RuntimeDir: filepath.Join(e.dir, "run"), StopGrace: 500 * time.Millisecond, DisableProbeLoop: true})
	if err != nil {
		t.Fatal(err)
	}
	e.node = node
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("node did not stop")
		}
	})
	e.engine = runbooks.New(runbooks.Options{
		Config: node.Config, Node: "n1", Agents: node, Locker: runbooks.NewMemoryLocker(),
		BackoffBase: -1, KillGrace: -1,
	})
	return e
}

// waitProbe waits until the agent's probe gives want.
func (e *estate) waitProbe(want bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, detail, _ := e.node.Probe(context.Background(), "ta")
		if ok == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("probe did not become %v: %s", want, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAlive waits until the node has started the agent.
func (e *estate) waitAlive() { e.t.Helper(); e.waitLiveness(true) }

// waitDead waits until the node has seen the agent exit.
func (e *estate) waitDead() { e.t.Helper(); e.waitLiveness(false) }

func (e *estate) waitLiveness(want bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		alive, detail, _ := e.node.Alive(context.Background(), "ta")
		if alive == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("agent alive=%v, want %v: %s", alive, want, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get calls the test agent's control API.
func (e *estate) get(path string) {
	e.t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", e.port, path))
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// pid is the agent's current pid, from its own answer.
func (e *estate) pid() string {
	e.t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/pid", e.port))
	if err != nil {
		e.t.Fatalf("GET /pid: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

func (e *estate) run(labels map[string]string) *runbooks.RunRecord {
	e.t.Helper()
	l := map[string]string{"alertname": "MedicAgentDown", "agent": "ta", "node": "n1"}
	for k, v := range labels {
		l[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.engine.Run(ctx, runbooks.Request{Alert: alert.Alert{Labels: l, Status: "firing", Fingerprint: "fp"}})
}

func names(rec *runbooks.RunRecord) string {
	var out []string
	for _, s := range rec.Steps {
		out = append(out, s.Name)
	}
	return strings.Join(out, " ")
}

// summary names the steps with every run of "verify i/n" steps as one
// "verify", so that step lists compare however many attempts a start took.
func summary(rec *runbooks.RunRecord) string {
	var out []string
	for _, s := range rec.Steps {
		n := s.Name
		if strings.HasPrefix(n, "verify ") {
			n = "verify"
			if len(out) > 0 && out[len(out)-1] == "verify" {
				continue
			}
		}
		out = append(out, n)
	}
	return strings.Join(out, " ")
}

func TestRealLifecycle(t *testing.T) {
	// The memory threshold sits between the agent's own RSS and its RSS
	// after a 96 MiB leak, whatever this machine's MemTotal.
	memThreshold := 48 << 20 / memTotal(t)
	repairScript := func(dir string) string {
		p := filepath.Join(dir, "repair-memory.sh")
		body := `#!/bin/sh
env | grep '^MEDIC_' | sort > "` + dir + `/repair.env"
echo "freed memory of $MEDIC_AGENT"
`
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}

	tests := []struct {
		name    string
		opts    func(dir string) estateOpts
		break_  func(e *estate)
		outcome string
		steps   string
		causes  []string
		check   func(t *testing.T, e *estate, rec *runbooks.RunRecord, pidBefore string)
	}{
		{
			name:    "dead: restart and verify",
			break_:  func(e *estate) { e.get("/die?code=3"); e.waitDead() },
			outcome: runbooks.OutcomeRecovered,
			steps:   "liveness restart verify",
		},
		{
			name:    "alive and probe passes: healthy, nothing touched",
			break_:  func(e *estate) {},
			outcome: runbooks.OutcomeHealthy,
			steps:   "liveness probe",
			check: func(t *testing.T, e *estate, rec *runbooks.RunRecord, pidBefore string) {
				if p := e.pid(); p != pidBefore {
					t.Errorf("a healthy agent was restarted: pid %s -> %s", pidBefore, p)
				}
			},
		},
		{
			name: "hung with leaked memory: memory repair, restart, verify",
			opts: func(dir string) estateOpts {
				return estateOpts{
					thresholds: fmt.Sprintf("memory = %g", memThreshold),
					causes: fmt.Sprintf(`cause "memory" {
    when    = usage.memory > agent.thresholds.memory
    repair  = ["%s"]
    timeout = "5s"
  }
  cause "disk" {
    when   = usage.disk > agent.thresholds.disk
    repair = ["/bin/false"]
  }`, repairScript(dir)),
				}
			},
			break_:  func(e *estate) { e.get("/leak?mb=96"); e.get("/hang") },
			outcome: runbooks.OutcomeRecovered,
			steps:   "liveness probe diagnose repair:memory restart verify",
			causes:  []string{"memory"},
			check: func(t *testing.T, e *estate, rec *runbooks.RunRecord, pidBefore string) {
				env, err := os.ReadFile(filepath.Join(e.dir, "repair.env"))
				if err != nil {
					t.Fatalf("the repair script did not run: %v", err)
				}
				for _, want := range []string{"MEDIC_AGENT=ta", "MEDIC_NODE=n1", "MEDIC_CAUSE=memory", "MEDIC_LABEL_ALERTNAME=MedicAgentDown", "MEDIC_LABEL_TEAM=ops-team", "MEDIC_RUN_ID=" + rec.ID} {
					if !strings.Contains(string(env), want+"\n") {
						t.Errorf("repair env lacks %s:\n%s", want, env)
					}
				}
				if rec.Usage == nil || rec.Usage.Memory <= memThreshold {
					t.Errorf("usage %+v not above threshold %g", rec.Usage, memThreshold)
				}
				if p := e.pid(); p == pidBefore {
					t.Errorf("agent not restarted: pid still %s", p)
				}
			},
		},
		{
			name:    "hung, no cause matched: restart alone",
			break_:  func(e *estate) { e.get("/hang") },
			outcome: runbooks.OutcomeRecovered,
			steps:   "liveness probe diagnose restart verify",
			check: func(t *testing.T, e *estate, rec *runbooks.RunRecord, pidBefore string) {
				if p := e.pid(); p == pidBefore {
					t.Errorf("agent not restarted: pid still %s", p)
				}
			},
		},
		{
			name: "hangs again after every restart: escalated, webhook gets the record",
			opts: func(string) estateOpts {
				return estateOpts{agentArgs: `, "--hang-after=1ms"`, verify: `attempts = 2
    interval = "100ms"`}
			},
			break_:  func(e *estate) {},
			outcome: runbooks.OutcomeEscalated,
			steps:   "liveness probe diagnose restart verify escalate",
			check: func(t *testing.T, e *estate, rec *runbooks.RunRecord, _ string) {
				got := e.hooks.Got()
				if len(got) != 1 || got[0].Run.ID != rec.ID || got[0].Run.Outcome != runbooks.OutcomeEscalated ||
					got[0].Alert.Labels["agent"] != "ta" || !strings.HasPrefix(got[0].Reason, "still failing after 2 verify attempts") {
					t.Errorf("webhook got %+v", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var o estateOpts
			if tt.opts != nil {
				o = tt.opts(dir)
			}
			e := newEstate(t, o)
			e.dir = dir // repair scripts write here
			if tt.outcome == runbooks.OutcomeEscalated {
				// The agent hangs 1ms after it starts: wait for it to run
				// and fail its probe instead of passing it.
				e.waitAlive()
				e.waitProbe(false)
			} else {
				e.waitProbe(true)
			}
			pidBefore := ""
			if tt.outcome != runbooks.OutcomeEscalated {
				pidBefore = e.pid()
			}
			tt.break_(e)
			rec := e.run(map[string]string{"team": "ops-team"})
			if rec.Outcome != tt.outcome {
				t.Fatalf("outcome %s (%s), want %s; steps %s", rec.Outcome, rec.Reason, tt.outcome, names(rec))
			}
			if got := summary(rec); got != tt.steps {
				t.Errorf("steps %q, want %q", got, tt.steps)
			}
			if strings.Join(rec.Causes, ",") != strings.Join(tt.causes, ",") {
				t.Errorf("causes %v, want %v", rec.Causes, tt.causes)
			}
			if tt.outcome == runbooks.OutcomeRecovered {
				if ok, detail, _ := e.node.Probe(context.Background(), "ta"); !ok {
					t.Errorf("recovered but the probe fails now: %s", detail)
				}
			}
			if tt.check != nil {
				tt.check(t, e, rec, pidBefore)
			}
		})
	}
}

func TestRealBudgetExhausted(t *testing.T) {
	e := newEstate(t, estateOpts{budget: `restarts = 2
    window = "1h"`})
	for i := 1; i <= 2; i++ {
		e.waitProbe(true)
		e.get("/die")
		e.waitDead()
		if rec := e.run(nil); rec.Outcome != runbooks.OutcomeRecovered {
			t.Fatalf("crash %d: %s %s", i, rec.Outcome, rec.Reason)
		}
	}
	e.waitProbe(true)
	e.get("/die")
	e.waitDead()
	rec := e.run(nil)
	if rec.Outcome != runbooks.OutcomeEscalated || rec.Reason != "restart budget exhausted: 2 in 1h" {
		t.Fatalf("third crash: %s %q (%s)", rec.Outcome, rec.Reason, names(rec))
	}
	if alive, _, _ := e.node.Alive(context.Background(), "ta"); alive {
		t.Error("the agent was restarted past its budget")
	}
	if got := e.hooks.Got(); len(got) != 1 || got[0].Reason != "restart budget exhausted: 2 in 1h" {
		t.Errorf("webhook got %+v", got)
	}
}
