package queue

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type seenRequest struct {
	Method, Host, URI, Body string
	ContentLength           int64
	Header                  http.Header
}

func recordingServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, func() []seenRequest) {
	var mu sync.Mutex
	var seen []seenRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := r.Header.Clone()
		h.Del("Accept-Encoding") // net/http's transport adds it; nothing reads it
		mu.Lock()
		seen = append(seen, seenRequest{r.Method, r.Host, r.RequestURI, string(b), r.ContentLength, h})
		mu.Unlock()
		if handle != nil {
			handle(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seenRequest { mu.Lock(); defer mu.Unlock(); return append([]seenRequest(nil), seen...) }
}

// TestPushWireSameAsNetHTTP: the default client sends what http.Client
// sends for the same push.
func TestPushWireSameAsNetHTTP(t *testing.T) {
	srv, seen := recordingServer(t, nil)
	e := entry{id: "1-0", device: "sw-1", seq: 42, payload: []byte(`{"vlan":7}`)}
	for _, viaNetHTTP := range []bool{false, true} {
		o := ConsumerOptions{Client: nil, Pool: "p", Agent: "a1",
			DeviceURL: func(d string) (string, error) { return srv.URL + "/devices/" + d + "/config?x=1", nil }}
		if viaNetHTTP {
			o.HTTPClient = &http.Client{Timeout: 5 * time.Second}
		}
		c := &Consumer{o: o}
		if !viaNetHTTP {
			c.pusher = newPusher(5 * time.Second)
		}
		code, err := c.push(context.Background(), e, 3)
		if err != nil || code != 200 {
			t.Fatalf("viaNetHTTP=%v: push = %d, %v", viaNetHTTP, code, err)
		}
	}
	got := seen()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	if d := cmp.Diff(got[1], got[0]); d != "" {
		t.Errorf("push differs from net/http's (-net/http +pusher):\n%s", d)
	}
	if got[0].Header.Get("Idempotency-Key") != "sw-1:42" || got[0].Header.Get("X-Medic-Epoch") != "3" || got[0].Header.Get("X-Medic-Seq") != "42" {
		t.Errorf("headers %v", got[0].Header)
	}
}

// TestPushConnections: keep-alive reuse, a device that closes after each
// answer, one that closes idle connections (the retry on a fresh one), a
// cancelled push and a timeout.
func TestPushConnections(t *testing.T) {
	ctx := context.Background()
	hdr := []pushHeader{{"Idempotency-Key", "d:1"}}
	t.Run("keep-alive", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		var n atomic.Int64
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				n.Add(1)
			}
		}
		srv.Start()
		defer srv.Close()
		p := newPusher(time.Second)
		defer p.closeIdle()
		tg := mustTarget(t, p, srv.URL+"/x")
		for i := 0; i < 20; i++ {
			if code, err := p.do(ctx, tg, []byte("{}"), hdr); err != nil || code != 200 {
				t.Fatalf("push %d = %d, %v", i, code, err)
			}
		}
		if n.Load() != 1 {
			t.Errorf("%d connections for 20 sequential pushes, want 1", n.Load())
		}
	})
	t.Run("connection-close", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			w.WriteHeader(201)
		}))
		defer srv.Close()
		p := newPusher(time.Second)
		tg := mustTarget(t, p, srv.URL+"/x")
		for i := 0; i < 5; i++ {
			if code, err := p.do(ctx, tg, []byte("{}"), hdr); err != nil || code != 201 {
				t.Fatalf("push %d = %d, %v", i, code, err)
			}
		}
	})
	t.Run("idle-closed-by-device", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
		srv.Config.IdleTimeout = 20 * time.Millisecond
		srv.Start()
		defer srv.Close()
		p := newPusher(time.Second)
		defer p.closeIdle()
		tg := mustTarget(t, p, srv.URL+"/x")
		for i := 0; i < 3; i++ {
			if code, err := p.do(ctx, tg, []byte("{}"), hdr); err != nil || code != 200 {
				t.Fatalf("push %d = %d, %v", i, code, err)
			}
			time.Sleep(100 * time.Millisecond) // the device closes the idle connection
		}
	})
	t.Run("cancel-and-timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		p := newPusher(200 * time.Millisecond)
		tg := mustTarget(t, p, srv.URL+"/x")
		start := time.Now()
		if _, err := p.do(ctx, tg, []byte("{}"), hdr); err == nil {
			t.Fatal("push to a device that never answers succeeded")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("timeout after %s, want ~200ms", d)
		}
		p.timeout = 10 * time.Second
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start = time.Now()
		if _, err := p.do(cctx, tg, []byte("{}"), hdr); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("cancelled push: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("cancellation after %s", d)
		}
	})
	t.Run("not-direct", func(t *testing.T) {
		p := newPusher(time.Second)
		p.proxy = func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.example:3128") }
		for _, u := range []string{"http://dev.example/x", "https://dev.example/x"} {
			if tg := mustTarget(t, p, u); tg.direct {
				t.Errorf("%s with a proxy: direct", u)
			}
		}
		p = newPusher(time.Second)
		if tg := mustTarget(t, p, "https://dev.example/x"); tg.direct {
			t.Errorf("https: direct")
		}
		if tg := mustTarget(t, p, "http://dev.example/x"); !tg.direct || tg.addr != "dev.example:80" || tg.uri != "/x" {
			t.Errorf("http: %+v", tg)
		}
		if _, err := p.do(ctx, mustTarget(t, p, "http://127.0.0.1:1/x"), nil, []pushHeader{{"X", "a\nb"}}); err == nil {
			t.Errorf("header value with a newline was sent")
		}
	})
}

func mustTarget(t *testing.T, p *pusher, u string) *pushTarget {
	t.Helper()
	tg, err := p.target(u)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
