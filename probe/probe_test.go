package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/medicops/medic/internal/testport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type proberCase struct {
	name   string
	config Config
	ok     bool
	detail string
}

// proberCases are probes of real servers and commands, by kind. Every
// registered kind needs a passing and a failing case
// (TestEveryKindIsRegisteredWhole).
func proberCases(t *testing.T) []proberCase {
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
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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

	return []proberCase{
		{"http 2xx", Config{Kind: HTTP, URL: srv.URL + "/ok"}, true, "status 200"},
		{"http 404", Config{Kind: HTTP, URL: srv.URL + "/missing"}, false, "status 404"},
		{"http expect_status", Config{Kind: HTTP, URL: srv.URL + "/teapot", ExpectStatus: 418}, true, "status 418"},
		{"http expect_status mismatch", Config{Kind: HTTP, URL: srv.URL + "/ok", ExpectStatus: 204}, false, "want 204"},
		{"http expect_body", Config{Kind: HTTP, URL: srv.URL + "/ok", ExpectBody: regexp.MustCompile(`"status":"serving"`)}, true, "status 200"},
		{"http expect_body mismatch", Config{Kind: HTTP, URL: srv.URL + "/ok", ExpectBody: regexp.MustCompile(`"status":"degraded"`)}, false, "body does not match"},
		{"http redirect not followed", Config{Kind: HTTP, URL: srv.URL + "/redirect"}, false, "status 302"},
		{"http timeout", Config{Kind: HTTP, URL: srv.URL + "/slow", Timeout: 200 * time.Millisecond}, false, "deadline exceeded"},
		{"http refused", Config{Kind: HTTP, URL: "http://" + closed + "/"}, false, "refused"},
		{"tcp open", Config{Kind: TCP, Address: ln.Addr().String()}, true, "connected"},
		{"tcp closed", Config{Kind: TCP, Address: closed}, false, "refused"},
		{"exec exit 0", Config{Kind: Exec, Command: []string{"sh", "-c", `test "$MEDIC_AGENT" = probed`}}, true, "exit 0"},
		{"exec exit 1", Config{Kind: Exec, Command: []string{"sh", "-c", "echo broken; exit 1"}}, false, "broken"},
		{"exec timeout", Config{Kind: Exec, Command: []string{"sleep", "5"}, Timeout: 200 * time.Millisecond}, false, "timed out"},
	}
}

func TestProbers(t *testing.T) {
	for _, tc := range proberCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.config
			if c.Timeout == 0 {
				c.Timeout = 2 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
			defer cancel()
			k, _ := Lookup(c.Kind)
			start := time.Now()
			ok, detail := k.Prober.Probe(ctx, &c, map[string]string{"MEDIC_AGENT": "probed"})
			if ok != tc.ok || !strings.Contains(detail, tc.detail) {
				t.Fatalf("probe = %v %q, want %v containing %q", ok, detail, tc.ok, tc.detail)
			}
			if !strings.HasPrefix(detail, c.Kind+" ") {
				t.Errorf("detail %q does not start with the kind", detail)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("probe took %s: timeout not applied", time.Since(start))
			}
		})
	}
}

// Every registered kind has a prober, a plan description, attributes of its
// own, and a passing and a failing case in proberCases.
// (Package hcl's TestProbeKindsDecodeAndPlan checks each kind decodes.)
func TestEveryKindIsRegisteredWhole(t *testing.T) {
	cases := proberCases(t)
	if !slices.IsSorted(Names()) {
		t.Errorf("Names() = %v, not sorted", Names())
	}
	for _, name := range Names() {
		k, _ := Lookup(name)
		if k.Prober == nil || k.Target == nil {
			t.Errorf("kind %q: prober %v, target %p", name, k.Prober, k.Target)
		}
		if len(k.Attributes) == 0 {
			t.Errorf("kind %q has no attributes: nothing says what it probes", name)
		}
		for _, a := range k.Attributes {
			for _, c := range CommonAttributes {
				if a.Name == c.Name {
					t.Errorf("kind %q declares the common attribute %q", name, a.Name)
				}
			}
		}
		var pass, fail bool
		for _, tc := range cases {
			if tc.config.Kind == name {
				pass, fail = pass || tc.ok, fail || !tc.ok
			}
		}
		if !pass || !fail {
			t.Errorf("kind %q: proberCases has a passing case %v, a failing case %v; want both", name, pass, fail)
		}
	}
	if _, ok := Lookup("icmp"); ok {
		t.Error("Lookup of an unregistered kind succeeded")
	}
}
