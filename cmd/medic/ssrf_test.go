package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
)

// recorder is a loopback device that records every request it gets.
type recorder struct {
	mu   sync.Mutex
	reqs []string // "HOST PATH?QUERY"
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, r.Host+" "+r.URL.RequestURI())
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (rc *recorder) seen() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.reqs...)
}

// logBuf is a slog handler's output that tests may read while the agent
// writes it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDeviceIDNotURLSyntax: the device IDs of issue 15's SSRF, with the
// device in the host and in the path of device_url, against `medic agent`
// and a loopback device. `medic publish` refuses the host-position IDs
// up front; published behind its back (straight into Redis), the agent
// refuses them too and never posts anywhere but the device's own URL.
func TestDeviceIDNotURLSyntax(t *testing.T) {
	rec := &recorder{}
	dev := httptest.NewServer(rec)
	defer dev.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(dev.URL, "http://"))
	srv := redistest.Start(t, redistest.Options{})
	for _, tc := range []struct {
		name, template string
		hostile, good  string
		wantGood       string // what the device sees for good
		inHost         bool
	}{
		// The device in the host: "localhost" is a DNS label that resolves
		// to the loopback device.
		{"host", "http://${device}:" + port + "/api/config", "127.0.0.1:" + port + "/x#", "localhost", "localhost:" + port + " /api/config", true},
		{"path", dev.URL + "/dev/${device}/config", "../../admin?x=1#", "sw-01", "127.0.0.1:" + port + " /dev/sw-01/config", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.mu.Lock()
			rec.reqs = nil
			rec.mu.Unlock()
			pool := "ssrf" + tc.name
			cfg := filepath.Join(t.TempDir(), "pool.hcl")
			src := fmt.Sprintf("agent \"a1\" {\n  node = \"h\"\n  command = [\"medic\", \"agent\"]\n}\npool %q {\n  agents = [\"a1\"]\n  check_interval = \"1s\"\n  device_url = %q\n}\n", pool, tc.template)
			if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logs := &logBuf{}
			done := make(chan error, 1)
			go func() {
				done <- runAgent(ctx, slog.New(slog.NewTextHandler(logs, nil)), agentOptions{
					ConfigFile: cfg, RedisURL: srv.URL(), Prefix: "medic:", Pool: pool, ID: "a1", Host: "h", RequestTimeout: time.Second,
				})
			}()
			regDeadline := time.Now().Add(10 * time.Second)
			for srv.Client().HLen(ctx, "medic:{pool:"+pool+"}:agents").Val() == 0 {
				if time.Now().After(regDeadline) {
					t.Fatal("agent did not register")
				}
				time.Sleep(10 * time.Millisecond)
			}
			publish := func(withConfig bool, device string) error {
				o := publishOptions{RedisURL: srv.URL(), Prefix: "medic:", Pool: pool, Device: device, File: "-", Timeout: 5 * time.Second}
				if withConfig {
					o.ConfigFile = cfg
				}
				return runPublish(ctx, o, strings.NewReader(`{"v":1}`), io.Discard, io.Discard)
			}
			err := publish(true, tc.hostile)
			if tc.inHost && (err == nil || !strings.Contains(err.Error(), "DNS label")) {
				t.Errorf("medic publish --config.file of %q: %v, want refused (not a DNS label)", tc.hostile, err)
			}
			if !tc.inHost && err != nil {
				t.Errorf("medic publish of %q in a path template: %v, want accepted (it is escaped)", tc.hostile, err)
			}
			if tc.inHost {
				// Behind the bridge's back, straight into the stream.
				if err := publish(false, tc.hostile); err != nil {
					t.Fatal(err)
				}
			}
			if err := publish(true, tc.good); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				seen := rec.seen()
				okGood := false
				for _, s := range seen {
					okGood = okGood || s == tc.wantGood
				}
				hostileDone := tc.inHost && strings.Contains(logs.String(), "DNS label")
				if !tc.inHost {
					hostileDone = len(seen) >= 2
				}
				if okGood && hostileDone {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("device saw %q; agent log:\n%s", seen, logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, s := range rec.seen() {
				switch {
				case s == tc.wantGood:
				case !tc.inHost && s == "127.0.0.1:"+port+" /dev/..%2F..%2Fadmin%3Fx%3D1%23/config":
				default:
					t.Errorf("the device got %q: a device ID escaped its place in the URL", s)
				}
			}
			cancel()
			<-done
		})
		if t.Failed() {
			return
		}
	}
}

// --device.url escapes the ID the same way, and holds host-position IDs
// to one DNS label.
func TestDeviceURLFlagEscapes(t *testing.T) {
	host, err := deviceURLFunc(nil, "http://${device}.switches.example/api/config")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := host("127.0.0.1:18080/x#"); err == nil {
		t.Errorf("host template rendered %q for a hostile ID, want refused", u)
	}
	if u, err := host("sw-01"); err != nil || u != "http://sw-01.switches.example/api/config" {
		t.Errorf("sw-01 → %q %v", u, err)
	}
	path, err := deviceURLFunc(nil, "http://127.0.0.1:9/dev/${device}/config")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := path("../../admin?x=1#"); err != nil || u != "http://127.0.0.1:9/dev/..%2F..%2Fadmin%3Fx%3D1%23/config" {
		t.Errorf("path template → %q %v", u, err)
	}
}
