package exporter

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/probe"
	"github.com/medicops/medic/runbooks"
)

// testagentBin is the test agent program, built once for the package.
var testagentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "medic-exporter-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testagentBin = filepath.Join(dir, "testagent")
	out, err := exec.Command("go", "build", "-o", testagentBin, "github.com/medicops/medic/internal/testagent").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build testagent: %v\n%s", err, out)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Every node stopped its goroutines (probes, watchdog runs, notify
		// readers, children's waiters and log copiers) when it stopped.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testAgent is a `command` agent running the test agent on a fixed port.
func testAgent(t testing.TB, name string, extra ...string) (*hcl.Agent, string) {
	t.Helper()
	addr := testport.Addr(t)
	argv := append([]string{testagentBin, "--listen", addr}, extra...)
	return &hcl.Agent{
		Name:     name,
		Command:  argv,
		Workdir:  filepath.Join(t.TempDir(), name),
		Watchdog: true,
		Probe: &hcl.Probe{
			Kind:     probe.HTTP,
			URL:      "http://" + addr + "/healthz",
			Timeout:  time.Second,
			Interval: time.Hour,
		},
		Thresholds: hcl.Thresholds{Memory: hcl.DefaultMemoryThreshold, CPU: hcl.DefaultCPUThreshold, Disk: hcl.DefaultDiskThreshold},
	}, addr
}

// started is a running Node with its HTTP API on 127.0.0.1.
type started struct {
	*Node
	URL  string
	Reg  *prometheus.Registry
	stop func()
}

// startNode runs a node for the test; ln, when given, is the listener its
// API serves on (so agents' command lines can name its URL in advance).
func startNode(t testing.TB, opts Options, ln net.Listener) *started {
	t.Helper()
	if opts.NodeName == "" {
		opts.NodeName = "node-1"
	}
	reg := prometheus.NewPedanticRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	n, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewUnstartedServer(n.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	s := &started{Node: n, URL: srv.URL, Reg: reg}
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return")
			}
			srv.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

func listen(t testing.TB) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// get does one request against a test agent or the node.
func call(t testing.TB, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// pidOf is the running identity of a supervised agent, or zero.
func (s *started) pidOf(name string) Identity {
	a, err := s.agent(name)
	if err != nil {
		return Identity{}
	}
	ok, _, id := a.alive()
	if !ok {
		return Identity{}
	}
	return id
}

// waitServing waits until the agent answers its probe.
func (s *started) waitServing(t testing.TB, name string) Identity {
	t.Helper()
	waitFor(t, 10*time.Second, name+" serving", func() bool {
		ok, _, _ := s.Probe(context.Background(), name)
		return ok
	})
	return s.pidOf(name)
}

// recordingRunner is a stand-in for the engine: it records each request
// and restarts the agent through the node, as the engine's dead → restart
// branch does.
type recordingRunner struct {
	node *Node
	mu   sync.Mutex
	reqs []runbooks.Request
	at   []time.Time
}

func (r *recordingRunner) Run(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	rec := &runbooks.RunRecord{Agent: req.Agent, Trigger: req.Trigger, Outcome: runbooks.OutcomeRecovered}
	if err := r.node.Restart(ctx, req.Agent); err != nil {
		rec.Outcome, rec.Error = runbooks.OutcomeFailed, err.Error()
	}
	return rec
}

func (r *recordingRunner) requests() []runbooks.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]runbooks.Request(nil), r.reqs...)
}

func configOf(agents ...*hcl.Agent) *hcl.Config { return &hcl.Config{Agents: agents} }
