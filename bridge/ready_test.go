package bridge

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestReadyWithSilentRedis: /-/ready answers 503 within about a second when
// Redis accepts connections but never answers (a hung or overloaded
// server, a half-open connection), instead of after the client's 3-5 s
// timeouts, and says what happened.
func TestReadyWithSilentRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	client := redis.NewClient(&redis.Options{Addr: ln.Addr().String()})
	t.Cleanup(func() { client.Close() })
	b := New(Options{Client: client, Token: testToken})
	mux := http.NewServeMux()
	b.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	start := time.Now()
	resp, err := http.Get(srv.URL + "/-/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "no answer to PING within 1s") || took > 2*time.Second {
		t.Errorf("GET /-/ready: %d %q after %s; want 503 \"no answer to PING within 1s\" within 2s", resp.StatusCode, body, took)
	}
}
