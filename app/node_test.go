package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

func nodeGet(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitMetrics(t *testing.T, url, want string, present bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, body := nodeGet(t, "GET", url+"/metrics")
		if strings.Contains(body, want) == present {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/metrics: %q present=%v never happened", want, !present)
}

// startNodeApp runs RunNode on 127.0.0.1:0 until the test ends.
func startNodeApp(t *testing.T, o NodeOptions) *running {
	t.Helper()
	o.Logger = slog.New(slog.DiscardHandler)
	o.ListenAddresses = []string{"127.0.0.1:0"}
	o.Registry = prometheus.NewRegistry()
	return inBackground(t, func(ctx context.Context, onListening func([]string)) error {
		o.OnListening = onListening
		return RunNode(ctx, o)
	})
}

// medic node in-process: it supervises a real agent (this test binary as
// a demo agent), serves its metrics and heartbeat API, and reloads safely
// by HTTP and by SIGHUP.
func TestRunNode(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	agentAddr := ln.Addr().String()
	ln.Close()
	cfgFile := filepath.Join(dir, "node.hcl")
	web := fmt.Sprintf(`
agent "web" {
  command = [%q, "demo-agent", "--name=web", "--listen=%s"]
  workdir = %q
  probe "http" {
    url      = "http://%s/healthz"
    interval = "200ms"
  }
}
`, os.Args[0], agentAddr, filepath.Join(dir, "web"), agentAddr)
	api := `
agent "api" {
  pidfile = "/nonexistent/api.pid"
  start   = ["true"]
}
`
	write := func(s string) {
		if err := os.WriteFile(cfgFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(web)

	r := startNodeApp(t, NodeOptions{
		ConfigFile: cfgFile, NodeName: "n1",
		StopGrace: time.Second, CPUWindow: 50 * time.Millisecond, RuntimeDir: filepath.Join(dir, "run"),
	})
	url := r.base
	defer func() {
		if err := r.stop(); err != nil {
			t.Errorf("RunNode: %v", err)
		}
		if c, err := net.Dial("tcp", agentAddr); err == nil {
			c.Close()
			t.Error("agent outlived medic node")
		}
	}()

	if code, _ := nodeGet(t, "GET", url+"/-/healthy"); code != 200 {
		t.Fatalf("/-/healthy = %d", code)
	}
	waitMetrics(t, url, `medic_agent_up{agent="web",node="n1"} 1`, true)
	waitMetrics(t, url, `medic_agent_probe_success{agent="web",node="n1"} 1`, true)
	if code, body := nodeGet(t, "PUT", url+"/api/v1/heartbeats/nobody"); code != 404 || !strings.Contains(body, "error") {
		t.Fatalf("heartbeat of unknown agent = %d %s", code, body)
	}
	// Wrong methods on the node's paths are 405s, unknown paths 404s.
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/-/reload", 405},
		{"POST", "/metrics", 405},
		{"DELETE", "/api/v1/agents", 405},
		{"GET", "/no-such-path", 404},
	} {
		if code, body := nodeGet(t, c.method, url+c.path); code != c.want {
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, code, body, c.want)
		}
	}

	// A broken file: the reload fails, the caller hears why, nothing changes.
	write(web + "agent \"broken\" {\n  command = \n}\n")
	code, body := nodeGet(t, "POST", url+"/-/reload")
	if code != 500 || !strings.Contains(body, "node.hcl") {
		t.Fatalf("reload of a broken config = %d %s", code, body)
	}
	waitMetrics(t, url, `medic_agent_up{agent="web",node="n1"} 1`, true)
	waitMetrics(t, url, "medic_config_last_reload_successful 0", true)

	write(web + api)
	if code, body := nodeGet(t, "POST", url+"/-/reload"); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	waitMetrics(t, url, "medic_config_last_reload_successful 1", true)
	waitMetrics(t, url, `medic_agent_up{agent="api",node="n1"} 0`, true)

	write(web)
	if err := procsig.Self(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, `agent="api"`, false)
	waitMetrics(t, url, `medic_agent_up{agent="web",node="n1"} 1`, true)
}

// --web.config.file reaches the server: basic auth guards every endpoint.
func TestRunNodeWebConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "node.hcl")
	os.WriteFile(cfgFile, []byte("agent \"ext\" {\n  pidfile = \"/nonexistent.pid\"\n  start = [\"true\"]\n}\n"), 0o644)
	webFile := filepath.Join(dir, "web.yml")
	// bcrypt of "s3cret"
	os.WriteFile(webFile, []byte("basic_auth_users:\n  admin: $2a$04$ZG9M3ZJCumCl9TJyUuZVuOMHyrlktkGChT.9dUacLkFWld/Hr97hi\n"), 0o644)
	r := startNodeApp(t, NodeOptions{
		ConfigFile: cfgFile, NodeName: "n1", WebConfigFile: webFile, RuntimeDir: filepath.Join(dir, "run"),
	})
	defer func() {
		if err := r.stop(); err != nil {
			t.Errorf("RunNode: %v", err)
		}
	}()
	checkBasicAuth(t, "GET", r.base+"/metrics", "", []authCase{
		{"", "", 401}, {"admin", "wrong", 401}, {"admin", "s3cret", 200},
	})
}

// With Redis, a reload reaches the node's switcher: a switchover job for a
// pool the configuration does not have fails; after a reload that adds the
// pool, the same job is switched (nothing to do: no agent of the pool is
// active).
func TestRunNodeReloadReachesSwitcher(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "node.hcl")
	base := `
agent "a1" {
  pidfile = "/nonexistent/a1.pid"
  start   = ["true"]
}
agent "a2" {
  pidfile = "/nonexistent/a2.pid"
  start   = ["true"]
}
runbook "sw" {
  match {
    alertname = "MedicPoolAgentDown"
  }
  switchover {
    pool = alert.labels.pool
  }
}
`
	pool := `
pool "p" {
  agents     = ["a1", "a2"]
  device_url = "http://127.0.0.1:1/${device}"
}
`
	write := func(s string) {
		if err := os.WriteFile(cfgFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(base)
	r := startNodeApp(t, NodeOptions{ConfigFile: cfgFile, NodeName: "n1", RedisURL: rs.URL(), RuntimeDir: filepath.Join(dir, "run")})
	defer func() {
		if err := r.stop(); err != nil {
			t.Errorf("RunNode: %v", err)
		}
	}()

	client := rs.Client()
	keys := jobs.Keys{Prefix: keys.DefaultPrefix}
	store := jobs.NewRunStore(client, jobs.StoreOptions{Keys: keys})
	runJob := func(id string) *runbooks.RunRecord {
		t.Helper()
		now := time.Now()
		job, _ := json.Marshal(jobs.Job{
			ID: id, Runbook: "sw", Agent: "a1", Node: "n1", Enqueued: now, Deadline: now.Add(time.Minute),
			Alert: alert.Alert{Status: "firing", StartsAt: now, Labels: map[string]string{
				"alertname": "MedicPoolAgentDown", "pool": "p", "agent": "a1", "node": "n1"}},
		})
		ctx := context.Background()
		if err := client.XAdd(ctx, &redis.XAddArgs{Stream: keys.Jobs("n1"), Values: map[string]any{"job": string(job)}}).Err(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if rec, err := store.Get(ctx, id); err == nil && rec != nil && rec.Outcome != "" {
				return rec
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("job %s: no finished run record", id)
		return nil
	}

	rec := runJob("before-reload")
	t.Logf("before the reload: %s: %s", rec.Outcome, rec.Reason)
	if rec.Outcome == runbooks.OutcomeSwitched || !strings.Contains(rec.Reason, "unknown pool") {
		t.Fatalf("switchover of a pool the config lacks: %s %s, want it to fail", rec.Outcome, rec.Reason)
	}
	write(base + pool)
	if code, body := nodeGet(t, "POST", r.base+"/-/reload"); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	rec = runJob("after-reload")
	t.Logf("after the reload: %s: %s", rec.Outcome, rec.Reason)
	if rec.Outcome != runbooks.OutcomeSwitched {
		t.Fatalf("switchover after the reload added the pool: %s %s, want %s", rec.Outcome, rec.Reason, runbooks.OutcomeSwitched)
	}
}

// medic node warns, and still starts, when it listens beyond loopback
// without authentication and when --node.name matches no agent.
func TestRunNodeStartupWarnings(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "node.hcl")
	os.WriteFile(cfgFile, []byte("agent \"ext\" {\n  node = \"web-1\"\n  pidfile = \"/nonexistent.pid\"\n  start = [\"true\"]\n}\n"), 0o644)
	for _, tc := range []struct {
		name, node, listen string
		want, notWant      []string
	}{
		{"loopback, its agent", "web-1", "127.0.0.1:0", nil, []string{"beyond loopback", "runs no agents"}},
		{"all interfaces", "web-1", ":0", []string{"level=WARN", "listens beyond loopback without authentication", "/-/reload"}, nil},
		{"no agents", "web-99", "127.0.0.1:0", []string{"level=WARN", `node web-99 runs no agents: no agent has node = \"web-99\" or no node; check --node.name`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuffer
			o := NodeOptions{ConfigFile: cfgFile, NodeName: tc.node, RuntimeDir: filepath.Join(t.TempDir(), "run"),
				Logger: slog.New(slog.NewTextHandler(&buf, nil)), ListenAddresses: []string{tc.listen}, Registry: prometheus.NewRegistry()}
			r := inBackground(t, func(ctx context.Context, onListening func([]string)) error {
				o.OnListening = onListening
				return RunNode(ctx, o)
			})
			if err := r.stop(); err != nil {
				t.Errorf("RunNode: %v", err)
			}
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("log has %q:\n%s", w, out)
				}
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every node process start publishes a fresh incarnation under the node's
// hash tag: the leases it takes name it, so the next start can tell they
// are gone.
func TestRunNodePublishesIncarnation(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "node.hcl")
	if err := os.WriteFile(cfgFile, []byte("agent \"a1\" {\n  pidfile = \"/nonexistent/a1.pid\"\n  start   = [\"true\"]\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	client := rs.Client()
	key := runbooks.IncarnationKey("medic:", "n1")
	var seen []string
	for range 2 {
		r := startNodeApp(t, NodeOptions{ConfigFile: cfgFile, NodeName: "n1", RedisURL: rs.URL(), RuntimeDir: filepath.Join(dir, "run")})
		inc, err := client.Get(context.Background(), key).Result()
		if err != nil || inc == "" {
			t.Fatalf("%s after start: %q %v", key, inc, err)
		}
		seen = append(seen, inc)
		if err := r.stop(); err != nil {
			t.Fatalf("RunNode: %v", err)
		}
	}
	if seen[0] == seen[1] {
		t.Errorf("two starts published the same incarnation %q", seen[0])
	}
}
