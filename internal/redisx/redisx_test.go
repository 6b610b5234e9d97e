package redisx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// go-redis's own log lines reach slog at debug, as structured records,
// not stderr.
func TestSetLogger(t *testing.T) {
	var buf bytes.Buffer
	SetLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { SetLogger(slog.New(slog.DiscardHandler)) })

	// A port nothing listens on: the pool fails to dial and go-redis logs it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 10 && buf.Len() == 0; i++ {
		_ = c.Ping(ctx).Err()
	}
	if buf.Len() == 0 {
		t.Fatal("go-redis logged nothing through slog after 10 failed dials")
	}
	var rec map[string]any
	if err := json.Unmarshal(bytes.SplitN(buf.Bytes(), []byte("\n"), 2)[0], &rec); err != nil {
		t.Fatalf("log line is not JSON: %v\n%s", err, buf.String())
	}
	if rec["level"] != "DEBUG" || rec["component"] != "redis" || rec["msg"] == "" {
		t.Errorf("record = %v, want level DEBUG, component redis and a message", rec)
	}
	t.Logf("%s", buf.String())
}
