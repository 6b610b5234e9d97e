package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/runbooks"
)

// buildTestAgent builds internal/testagent into dir.
func buildTestAgent(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "testagent")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/medicops/medic/internal/testagent").CombinedOutput()
	if err != nil {
		t.Fatalf("build testagent: %v\n%s", err, out)
	}
	return bin
}

func TestRunRecoversPidfileAgent(t *testing.T) {
	dir := t.TempDir()
	agent := buildTestAgent(t, dir)
	port := testport.Free(t)
	pidfile := filepath.Join(dir, "ops.pid")
	start := filepath.Join(dir, "start.sh")
	// An external supervisor's start command: daemonise and write a pidfile.
	script := fmt.Sprintf(`#!/bin/sh
setsid %s --listen=127.0.0.1:%d --pidfile=%s >%s/agent.log 2>&1 </dev/null &
for i in $(seq 100); do [ -s %s ] && exit 0; sleep 0.05; done
exit 1
`, agent, port, pidfile, dir, pidfile)
	if err := os.WriteFile(start, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidfile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = procsig.Process(pid, syscall.SIGKILL)
			}
		}
	})
	cfg := filepath.Join(dir, "medic.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
agent "ops" {
  node    = "n1"
  pidfile = %q
  start   = [%q]
  probe "http" {
    url = "http://127.0.0.1:%d/healthz"
  }
}
agent "sup" {
  node    = "n1"
  command = [%q]
}
runbook "agent-recovery" {
  match { alertname = "MedicAgentDown" }
  verify {
    attempts = 10
    interval = "100ms"
  }
}
`, pidfile, start, port, agent)), 0o644); err != nil {
		t.Fatal(err)
	}
	payload := func(agents ...string) string {
		var alerts []string
		for i, a := range agents {
			status := "firing"
			if a == "resolved" {
				a, status = "ops", "resolved"
			}
			alerts = append(alerts, fmt.Sprintf(`{"status":%q,"labels":{"alertname":"MedicAgentDown","agent":%q,"node":"n1"},"startsAt":"2026-11-22T00:00:00Z","fingerprint":"f%d","somethingNew":1}`, status, a, i))
		}
		p := filepath.Join(dir, "alert.json")
		if err := os.WriteFile(p, []byte(`{"version":"4","status":"firing","alerts":[`+strings.Join(alerts, ",")+`]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	redisURL := ""
	run := func(alertFile string) ([]runbooks.RunRecord, string, error) {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := runOnce(ctx, slog.New(slog.DiscardHandler), runOptions{ConfigFile: cfg, AlertFile: alertFile, Node: "n1", RedisURL: redisURL, Prefix: "medic:", Stdout: &stdout, Stderr: &stderr})
		var recs []runbooks.RunRecord
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			if line == "" {
				continue
			}
			var r runbooks.RunRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("stdout line is not a run record: %v\n%s", err, line)
			}
			recs = append(recs, r)
		}
		return recs, stderr.String(), err
	}

	// The agent is not running: medic run starts it and verifies it.
	recs, stderr, err := run(payload("ops", "resolved"))
	if err != nil || len(recs) != 1 || recs[0].Outcome != runbooks.OutcomeRecovered {
		t.Fatalf("first run: err=%v recs=%+v stderr=%s", err, recs, stderr)
	}
	if !strings.Contains(stderr, "f1: resolved, not run") {
		t.Errorf("resolved alert not reported on stderr: %s", stderr)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := procsig.Process(pid, 0); err != nil {
		t.Fatalf("agent pid %d not running after recovery: %v", pid, err)
	}

	// Now it is alive and its probe passes: healthy, nothing touched.
	recs, _, err = run(payload("ops"))
	if err != nil || len(recs) != 1 || recs[0].Outcome != runbooks.OutcomeHealthy {
		t.Fatalf("second run: err=%v recs=%+v", err, recs)
	}
	if b2, _ := os.ReadFile(pidfile); string(b2) != string(b) {
		t.Errorf("a healthy agent was restarted: pid %s -> %s", b, b2)
	}

	// A command agent belongs to medic node: not started here, exit 1.
	recs, stderr, err = run(payload("sup"))
	var code exitCode
	if !errors.As(err, &code) || code != 1 || len(recs) != 0 || !strings.Contains(stderr, "supervised by medic node") {
		t.Fatalf("command agent: err=%v recs=%+v stderr=%s", err, recs, stderr)
	}
	if out, _ := exec.Command("pgrep", "-f", "^"+agent+"$").Output(); len(out) > 0 {
		t.Errorf("medic run started the command agent: pids %s", out)
	}

	// With --redis.url, medic run honours the lease a medic node holds.
	srv := redistest.Start(t, redistest.Options{})
	redisURL = srv.URL()
	client := srv.Client()
	if err := client.Set(context.Background(), "medic:lease:n1:ops", "held-by-node", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	recs, _, err = run(payload("ops"))
	if !errors.As(err, &code) || len(recs) != 1 || recs[0].Outcome != runbooks.OutcomeSkipped || !strings.Contains(recs[0].Reason, "another run holds the lease") {
		t.Fatalf("leased agent: err=%v recs=%+v", err, recs)
	}
	client.Del(context.Background(), "medic:lease:n1:ops")
	recs, _, err = run(payload("ops"))
	if err != nil || len(recs) != 1 || recs[0].Outcome != runbooks.OutcomeHealthy {
		t.Fatalf("after the lease is gone: err=%v recs=%+v", err, recs)
	}
	if n := client.Exists(context.Background(), "medic:lease:n1:ops").Val(); n != 0 {
		t.Errorf("medic run left its lease behind")
	}
}
