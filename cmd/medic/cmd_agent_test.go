package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/queue"
	"github.com/medicops/medic/queue/devicetest"
)

// TestAgentAndPublishCommands runs `medic agent` (with the pool's
// device_url from HCL) and `medic publish` against a real Redis and a strict
// device: the configs arrive in order, exactly once.
func TestAgentAndPublishCommands(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	dev := devicetest.New()
	defer dev.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pool.hcl")
	hclSrc := fmt.Sprintf(`agent "cfg-1" {
  node    = "cfg-host"
  command = ["medic", "agent", "--pool=sw", "--agent.id=cfg-1"]
}
pool "sw" {
  agents         = ["cfg-1"]
  check_interval = "1s"
  device_url     = "%s/devices/${device}/config"
}
`, dev.URL())
	if err := os.WriteFile(cfg, []byte(hclSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runAgent(ctx, slog.New(slog.DiscardHandler), agentOptions{
			ConfigFile: cfg, RedisURL: srv.URL(), Prefix: "medic:", Pool: "sw", ID: "cfg-1", Host: "h",
			RequestTimeout: time.Second,
		})
	}()
	client := srv.Client()
	deadline := time.Now().Add(5 * time.Second)
	for client.HLen(ctx, "medic:{pool:sw}:agents").Val() == 0 {
		select {
		case err := <-done:
			t.Fatalf("agent stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("agent did not register")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var published []string
	for i := 1; i <= 5; i++ {
		payload := fmt.Sprintf(`{"step":%d}`, i)
		var out bytes.Buffer
		err := runPublish(ctx, publishOptions{ConfigFile: cfg, RedisURL: srv.URL(), Prefix: "medic:", Pool: "sw",
			Device: "sw-01", IdempotencyKey: fmt.Sprint("k", i), File: "-", Timeout: 5 * time.Second},
			strings.NewReader(payload), &out, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var res queue.Published
		if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Seq != int64(i) {
			t.Fatalf("publish %d printed %q (%v), want seq %d", i, out.String(), err, i)
		}
		published = append(published, payload)
	}
	deadline = time.Now().Add(5 * time.Second)
	for dev.Applied("sw-01") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("device applied %d of 5", dev.Applied("sw-01"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if bad := dev.Check(map[string][]string{"sw-01": published}); len(bad) > 0 {
		t.Errorf("device: %v", bad)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("agent: %v", err)
	}
	if n := client.HLen(context.Background(), "medic:{pool:sw}:agents").Val(); n != 0 {
		t.Errorf("agent still registered after a clean stop")
	}
	// An agent not in the pool's list is refused.
	err := runAgent(context.Background(), slog.New(slog.DiscardHandler), agentOptions{
		ConfigFile: cfg, RedisURL: srv.URL(), Pool: "sw", ID: "stranger"})
	if err == nil || !strings.Contains(err.Error(), "not one of pool") {
		t.Errorf("stranger agent: %v", err)
	}
}
