package heartbeat_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/heartbeat"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/runbooks"
)

// When the test binary runs as a guarded agent (MEDIC_HEARTBEAT_HELPER
// set), it only runs the client until SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("MEDIC_HEARTBEAT_HELPER") != "" {
		helper()
		return
	}
	goleak.VerifyTestMain(m)
}

func helper() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	timeout, _ := time.ParseDuration(os.Getenv("HB_TIMEOUT"))
	c := heartbeat.New(os.Getenv("HB_URL"), os.Getenv("MEDIC_AGENT"), timeout)
	c.Interval = 100 * time.Millisecond
	if err := c.Run(ctx); err != nil {
		os.Exit(3)
	}
}

type node struct {
	*exporter.Node
	url  string
	recs chan *runbooks.RunRecord
}

func startNode(t *testing.T, agents ...*hcl.Agent) *node {
	t.Helper()
	recs := make(chan *runbooks.RunRecord, 8)
	n, err := exporter.New(exporter.Options{
		Config:    &hcl.Config{Agents: agents},
		NodeName:  "n1",
		StopGrace: 200 * time.Millisecond,
		OnRecord:  func(r *runbooks.RunRecord) { recs <- r },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return &node{Node: n, url: srv.URL, recs: recs}
}

func (n *node) agentState(t *testing.T, name string) exporter.AgentState {
	t.Helper()
	for _, a := range n.State().Agents {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no agent %s", name)
	return exporter.AgentState{}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func register(c *heartbeat.Client) error { return c.Register(context.Background()) }
func beat(c *heartbeat.Client) error     { return c.Beat(context.Background()) }

func TestRegisterBeatUnregister(t *testing.T) {
	n := startNode(t,
		&hcl.Agent{Name: "ops", Pidfile: "/nonexistent.pid"},
		&hcl.Agent{Name: "declared", Pidfile: "/nonexistent.pid", Heartbeat: &hcl.Heartbeat{Timeout: 9 * time.Second}},
		&hcl.Agent{Name: "bare", Pidfile: "/nonexistent.pid"},
	)
	ctx := context.Background()
	tests := []struct {
		name    string
		client  *heartbeat.Client
		call    func(c *heartbeat.Client) error
		status  int // 0: success
		timeout float64
	}{
		{"register", heartbeat.New(n.url, "ops", 15*time.Second), register, 0, 15},
		{"beat keeps timeout", heartbeat.New(n.url, "ops", 0), beat, 0, 15},
		{"timeout from HCL", heartbeat.New(n.url, "declared", 0), register, 0, 9},
		{"unknown agent", heartbeat.New(n.url, "ghost", time.Second), register, 404, 0},
		{"no timeout anywhere", heartbeat.New(n.url+"/", "bare", 0), register, 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(tt.client)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				st := n.agentState(t, tt.client.Agent)
				if !st.HeartbeatRegistered || st.HeartbeatTimeout != tt.timeout {
					t.Fatalf("state %+v, want registered with timeout %v", st, tt.timeout)
				}
				return
			}
			var apiErr *heartbeat.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status {
				t.Fatalf("err = %v, want status %d", err, tt.status)
			}
		})
	}
	if err := heartbeat.New(n.url, "ops", 0).Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	if st := n.agentState(t, "ops"); st.HeartbeatRegistered {
		t.Fatal("still registered after Unregister")
	}
}

func TestRunBeatsOnlyWhileHealthy(t *testing.T) {
	n := startNode(t, &hcl.Agent{Name: "ops", Pidfile: "/nonexistent.pid"})
	var healthy atomic.Bool
	healthy.Store(true)
	c := heartbeat.New(n.url, "ops", 300*time.Millisecond)
	c.Healthy = func(context.Context) bool { return healthy.Load() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	waitFor(t, 2*time.Second, "registered", func() bool { return n.agentState(t, "ops").HeartbeatRegistered })
	time.Sleep(500 * time.Millisecond) // longer than the timeout: beats keep it fresh
	if ok, detail, _ := n.Probe(ctx, "ops"); strings.Contains(detail, "overdue") {
		t.Fatalf("beating agent judged hung: %v %s", ok, detail)
	}
	healthy.Store(false)
	waitFor(t, 2*time.Second, "overdue", func() bool {
		_, detail, _ := n.Probe(context.Background(), "ops")
		return strings.Contains(detail, "heartbeat overdue")
	})
	healthy.Store(true)
	waitFor(t, 2*time.Second, "fresh again", func() bool {
		_, detail, _ := n.Probe(context.Background(), "ops")
		return !strings.Contains(detail, "heartbeat")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n.agentState(t, "ops").HeartbeatRegistered {
		t.Fatal("Run did not unregister at the end")
	}
}

func TestRunStopsOnUnknownAgent(t *testing.T) {
	n := startNode(t)
	err := heartbeat.New(n.url, "ghost", time.Second).Run(context.Background())
	var apiErr *heartbeat.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Fatalf("Run = %v", err)
	}
}

// A real process guarded by the client: SIGSTOP hangs it for real (no
// cooperation from the process), the node sees the heartbeat go overdue
// and restarts it; the new process registers again.
func TestStoppedProcessIsRestarted(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The helper needs the node's URL before the node exists: start the
	// node first without the agent, then add it by ApplyConfig.
	n := startNode(t)
	def := &hcl.Agent{
		Name:     "guarded",
		Command:  []string{self},
		Env:      map[string]string{"MEDIC_HEARTBEAT_HELPER": "1", "HB_URL": n.url, "HB_TIMEOUT": "500ms"},
		Workdir:  t.TempDir(),
		Watchdog: true,
	}
	if err := n.ApplyConfig(context.Background(), &hcl.Config{Agents: []*hcl.Agent{def}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "registered", func() bool { return n.agentState(t, "guarded").HeartbeatRegistered })
	pid := n.agentState(t, "guarded").PID
	// procsig refuses pid ≤ 1: a stale snapshot's 0 must fail the test,
	// never stop the test's own process group.
	if err := procsig.Process(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = procsig.Process(pid, syscall.SIGKILL) })
	select {
	case rec := <-n.recs:
		if rec.Outcome != runbooks.OutcomeRecovered || rec.Labels["alertname"] != "MedicAgentHeartbeatMissed" {
			t.Fatalf("record %+v", rec)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watchdog run")
	}
	waitFor(t, 5*time.Second, "new process registered", func() bool {
		st := n.agentState(t, "guarded")
		return st.Up && st.PID != pid && st.HeartbeatRegistered
	})
	if st := n.agentState(t, "guarded"); st.Restarts != 1 {
		t.Fatalf("restarts = %d", st.Restarts)
	}
	if err := procsig.Process(pid, 0); err == nil {
		t.Fatalf("stopped process %d still exists", pid)
	}
}
