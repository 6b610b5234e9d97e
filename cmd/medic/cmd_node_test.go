package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// medic node in-process: it supervises a real test agent, serves its
// metrics and heartbeat API, and reloads safely by HTTP and by SIGHUP.
func TestNodeCommand(t *testing.T) {
	dir := t.TempDir()
	bin := buildTestAgent(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	agentAddr := ln.Addr().String()
	ln.Close()
	cfgFile := filepath.Join(dir, "node.hcl")
	web := fmt.Sprintf(`
agent "web" {
  command = [%q, "--listen", %q]
  workdir = %q
  probe "http" {
    url      = "http://%s/healthz"
    interval = "200ms"
  }
}
`, bin, agentAddr, filepath.Join(dir, "web"), agentAddr)
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

	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan []string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runNode(ctx, slog.New(slog.DiscardHandler), nodeOptions{
			ConfigFile: cfgFile, NodeName: "n1", Listen: []string{"127.0.0.1:0"},
			StopGrace: time.Second, CPUWindow: 50 * time.Millisecond, RuntimeDir: filepath.Join(dir, "run"),
			Registry: prometheus.NewRegistry(), OnListening: func(a []string) { addrs <- a },
		})
	}()
	var url string
	select {
	case a := <-addrs:
		url = "http://" + a[0]
	case err := <-done:
		t.Fatalf("runNode: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not listening")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runNode: %v", err)
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

	// A broken file: the reload fails, the caller hears why, nothing changes.
	write(web + "agent \"broken\" {\n  command = \n}\n")
	code, body := nodeGet(t, "POST", url+"/-/reload")
	if code != 500 || !strings.Contains(body, "node.hcl") {
		t.Fatalf("reload of a broken config = %d %s", code, body)
	}
	waitMetrics(t, url, `medic_agent_up{agent="web",node="n1"} 1`, true)

	write(web + api)
	if code, body := nodeGet(t, "POST", url+"/-/reload"); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	waitMetrics(t, url, `medic_agent_up{agent="api",node="n1"} 0`, true)

	write(web)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, `agent="api"`, false)
	waitMetrics(t, url, `medic_agent_up{agent="web",node="n1"} 1`, true)
}

// --web.config.file reaches the server: basic auth guards every endpoint.
func TestNodeCommandWebConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "node.hcl")
	os.WriteFile(cfgFile, []byte("agent \"ext\" {\n  pidfile = \"/nonexistent.pid\"\n  start = [\"true\"]\n}\n"), 0o644)
	webFile := filepath.Join(dir, "web.yml")
	// bcrypt of "s3cret"
	os.WriteFile(webFile, []byte("basic_auth_users:\n  admin: $2a$04$ZG9M3ZJCumCl9TJyUuZVuOMHyrlktkGChT.9dUacLkFWld/Hr97hi\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan []string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runNode(ctx, slog.New(slog.DiscardHandler), nodeOptions{
			ConfigFile: cfgFile, NodeName: "n1", Listen: []string{"127.0.0.1:0"}, WebConfigFile: webFile,
			RuntimeDir: filepath.Join(dir, "run"), Registry: prometheus.NewRegistry(), OnListening: func(a []string) { addrs <- a },
		})
	}()
	var url string
	select {
	case a := <-addrs:
		url = "http://" + a[0]
	case err := <-done:
		cancel()
		t.Fatalf("runNode: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("not listening")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runNode: %v", err)
		}
	}()
	for _, tc := range []struct {
		user, pass string
		code       int
	}{{"", "", 401}, {"admin", "wrong", 401}, {"admin", "s3cret", 200}} {
		req, _ := http.NewRequest("GET", url+"/metrics", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s:%s → %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.code)
		}
	}
}
