package exporter

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/testport"
)

func TestProbeKinds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, `{"status":"serving","queue":3}`)
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
			fmt.Fprint(w, "short and stout")
		case "/slow":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed := testport.Addr(t)

	tests := []struct {
		name   string
		probe  hcl.Probe
		ok     bool
		detail string
	}{
		{"http 2xx", hcl.Probe{Kind: "http", URL: srv.URL + "/ok"}, true, "status 200"},
		{"http 404", hcl.Probe{Kind: "http", URL: srv.URL + "/missing"}, false, "status 404"},
		{"http expect_status", hcl.Probe{Kind: "http", URL: srv.URL + "/teapot", ExpectStatus: 418}, true, "status 418"},
		{"http expect_status mismatch", hcl.Probe{Kind: "http", URL: srv.URL + "/ok", ExpectStatus: 204}, false, "want 204"},
		{"http expect_body", hcl.Probe{Kind: "http", URL: srv.URL + "/ok", ExpectBody: regexp.MustCompile(`"status":"serving"`)}, true, "status 200"},
		{"http expect_body mismatch", hcl.Probe{Kind: "http", URL: srv.URL + "/ok", ExpectBody: regexp.MustCompile(`"status":"degraded"`)}, false, "body does not match"},
		{"http redirect not followed", hcl.Probe{Kind: "http", URL: srv.URL + "/redirect"}, false, "status 302"},
		{"http timeout", hcl.Probe{Kind: "http", URL: srv.URL + "/slow", Timeout: 200 * time.Millisecond}, false, "deadline exceeded"},
		{"http refused", hcl.Probe{Kind: "http", URL: "http://" + closed + "/"}, false, "refused"},
		{"tcp open", hcl.Probe{Kind: "tcp", Address: ln.Addr().String()}, true, "connected"},
		{"tcp closed", hcl.Probe{Kind: "tcp", Address: closed}, false, "refused"},
		{"exec exit 0", hcl.Probe{Kind: "exec", Command: []string{"sh", "-c", `test "$MEDIC_AGENT" = probed`}}, true, "exit 0"},
		{"exec exit 1", hcl.Probe{Kind: "exec", Command: []string{"sh", "-c", "echo broken; exit 1"}}, false, "broken"},
		{"exec timeout", hcl.Probe{Kind: "exec", Command: []string{"sleep", "5"}, Timeout: 200 * time.Millisecond}, false, "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			ok, detail := runProbe(context.Background(), &tt.probe, map[string]string{"MEDIC_AGENT": "probed"})
			if ok != tt.ok || !strings.Contains(detail, tt.detail) {
				t.Fatalf("runProbe = %v %q, want %v containing %q", ok, detail, tt.ok, tt.detail)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("probe took %s: timeout not applied", time.Since(start))
			}
		})
	}
}

// The probe of a real test agent passes, fails while it hangs, and the
// latest result (with its duration) is what the node exports.
func TestProbeOnDemandAgainstTestAgent(t *testing.T) {
	def, addr := testAgent(t, "probed")
	def.Probe.ExpectBody = regexp.MustCompile(`^ok probed pid \d+`)
	def.Probe.Timeout = 300 * time.Millisecond
	n := startNode(t, Options{Config: configOf(def)}, nil)
	n.waitServing(t, "probed")
	a, _ := n.agent("probed")
	if r := a.probeState(); !r.Done || !r.OK || r.Duration <= 0 {
		t.Fatalf("latest result = %+v", r)
	}
	call(t, "POST", "http://"+addr+"/hang", "")
	ok, detail, err := n.Probe(context.Background(), "probed")
	if err != nil || ok || !strings.Contains(detail, "deadline exceeded") {
		t.Fatalf("hung agent probe = %v %q %v", ok, detail, err)
	}
	if r := a.probeState(); r.OK || r.Duration < 300*time.Millisecond {
		t.Fatalf("latest result after hang = %+v", r)
	}
	if _, _, err := n.Probe(context.Background(), "nobody"); err == nil {
		t.Fatal("probe of an unknown agent: no error")
	}
}

func TestProbeLoopRunsPeriodically(t *testing.T) {
	def, _ := testAgent(t, "looped")
	def.Probe.Interval = 100 * time.Millisecond
	n := startNode(t, Options{Config: configOf(def)}, nil)
	a, _ := n.agent("looped")
	var first time.Time
	waitFor(t, 5*time.Second, "a passing periodic probe", func() bool {
		r := a.probeState()
		if r.OK && first.IsZero() {
			first = r.At
		}
		return r.OK
	})
	waitFor(t, 2*time.Second, "another periodic probe", func() bool { return a.probeState().At.After(first) })
}
