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

// A Redis that accepts and never answers cannot hold a command past its
// context's deadline (go-redis otherwise waits for its own read timeout).
func TestNewHonoursContextDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	addr := ln.Addr().String()
	for _, url := range []string{"redis://" + addr, "redis+cluster://" + addr} {
		t.Run(url, func(t *testing.T) {
			c, err := New(url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = c.Ping(ctx).Err()
			if took := time.Since(start); err == nil || took > 1500*time.Millisecond {
				t.Errorf("Ping with a 500ms deadline to a hung Redis = %v after %v, want an error within ~500ms", err, took)
			}
		})
	}
}
