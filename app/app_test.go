package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/runbooks"
)

func TestMain(m *testing.M) {
	// The demo estate runs this test binary as its agents.
	if len(os.Args) > 1 && os.Args[1] == "demo-agent" {
		o := DemoAgentOptions{}
		for _, a := range os.Args[2:] {
			k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			switch k {
			case "name":
				o.Name = v
			case "listen":
				o.Listen = v
			case "heartbeat-url":
				o.HeartbeatURL = v
			case "pool":
				o.Pool = v
			case "config.file":
				o.ConfigFile = v
			case "redis.url":
				o.RedisURL = v
			}
		}
		ctx, stop := signalContext()
		defer stop()
		if err := RunDemoAgent(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestCheckExposure(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	empty := write("empty.yml", "{}\n")
	users := write("users.yml", "basic_auth_users:\n  am: "+string(hash)+"\n")
	broken := write("broken.yml", "basic_auth_users: [\n")
	missing := filepath.Join(dir, "missing.yml")
	for _, tc := range []struct {
		addrs     []string
		token     bool
		webConfig string
		wantErr   string // "" means accepted
	}{
		{[]string{":9095"}, false, "", "refusing to start"},
		{[]string{"0.0.0.0:9095"}, false, "", "refusing to start"},
		{[]string{"10.1.2.3:9095"}, false, "", "refusing to start"},
		{[]string{"127.0.0.1:9095"}, false, "", ""},
		{[]string{"127.0.0.2:9095"}, false, "", ""},
		{[]string{"[::1]:9095"}, false, "", ""},
		{[]string{"localhost:9095"}, false, "", ""},
		{[]string{"127.0.0.1:9095", ":9096"}, false, "", "refusing to start"},
		{[]string{":9095"}, true, "", ""},
		{[]string{":9095"}, false, users, ""},
		// A web config that authenticates nobody is not authentication.
		{[]string{":9095"}, false, empty, "refusing to start: --web.config.file " + empty + " sets neither basic_auth_users"},
		{[]string{"127.0.0.1:9095"}, false, empty, ""},
		{[]string{":9095"}, true, empty, ""},
		// A bad file is refused even on loopback or with a token.
		{[]string{"127.0.0.1:9095"}, true, missing, "--web.config.file " + missing + ": open"},
		{[]string{"127.0.0.1:9095"}, false, broken, "--web.config.file " + broken + ": yaml: "},
	} {
		_, _, err := checkExposure(tc.addrs, tc.token, tc.webConfig)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkExposure(%v, token=%v, webConfig=%q) = %v, want error containing %q", tc.addrs, tc.token, tc.webConfig, err, tc.wantErr)
		}
	}
}

// running is one app.Run in the background.
type running struct {
	base string
	stop func() error
}

func start(t *testing.T, o Options) *running {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return inBackground(t, func(ctx context.Context, onListening func([]string)) error {
		o.OnListening = onListening
		return Run(ctx, o)
	})
}

// inBackground runs a command until the test ends or stop is called, and
// returns once it listens.
func inBackground(t *testing.T, run func(ctx context.Context, onListening func([]string)) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan []string, 1)
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, func(a []string) { addrs <- a }) }()
	select {
	case a := <-addrs:
		r := &running{base: "http://" + a[0]}
		var once bool
		var err error
		r.stop = func() error {
			if !once {
				once = true
				cancel()
				err = <-errc
			}
			return err
		}
		t.Cleanup(func() { r.stop() })
		return r
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("Run did not start listening")
	}
	return nil
}

func TestBridgeRefusesUnauthenticatedNonLoopback(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte(`runbook "r" {
  match { alertname = "X" }
}
`), 0o644)
	err := Run(context.Background(), Options{ConfigFile: dir, RedisURL: "redis://127.0.0.1:1", ListenAddresses: []string{":0"}})
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "--bridge.token-file") {
		t.Fatalf("Run = %v, want a refusal that names --bridge.token-file", err)
	}
	err = Run(context.Background(), Options{ConfigFile: filepath.Join(dir, "missing.hcl"), RedisURL: "redis://127.0.0.1:1"})
	if err == nil {
		t.Fatal("Run with a missing config file succeeded")
	}
}

func httpDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func waitRuns(t *testing.T, base, token, query string, n int, timeout time.Duration) []runbooks.RunRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, body := httpDo(t, "GET", base+"/api/v1/runs?"+query, token, "")
		var out struct{ Runs []runbooks.RunRecord }
		_ = json.Unmarshal([]byte(body), &out)
		if len(out.Runs) >= n {
			return out.Runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d runs (%s): have %s", n, query, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeLabelInjection sends labels that would run commands if any
// part of the chain used a shell: webhook → Redis → consumer → engine →
// repair script. The script sees them as inert environment values.
func TestServeLabelInjection(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{AOF: true})
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	victim := filepath.Join(dir, "victim")
	pwned := filepath.Join(dir, "pwned")
	for _, d := range []string{work, victim} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(dir, "repair.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$MEDIC_LABEL_CMD\" \"$MEDIC_LABEL_SEMI\" > \"$MEDIC_WORKDIR/seen\"\n"), 0o755)
	cfgDir := filepath.Join(dir, "cfg")
	os.MkdirAll(cfgDir, 0o755)
	cfg := fmt.Sprintf(`
agent "victim" {
  node     = "n1"
  command  = ["/bin/sleep", "3600"]
  workdir  = %q
  watchdog = false
  probe "exec" {
    command = ["/bin/false"]
    timeout = "1s"
  }
}

runbook "inject" {
  match { alertname = "Inject" }
  cause "always" {
    when    = true
    repair  = [%q]
    timeout = "5s"
  }
  verify {
    attempts = 1
    interval = "10ms"
  }
}
`, work, script)
	os.WriteFile(filepath.Join(cfgDir, "estate.hcl"), []byte(cfg), 0o644)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
	reg := prometheus.NewRegistry()
	r := start(t, Options{
		ConfigFile: cfgDir, RedisURL: rs.URL(), ListenAddresses: []string{"127.0.0.1:0"}, TokenFile: tokenFile,
		Node: "n1", Registry: reg,
	})

	cmdLabel := "$(touch " + pwned + ")"
	semiLabel := "; rm -rf " + victim
	alert, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "alerts": []map[string]any{{
		"status":   "firing",
		"labels":   map[string]string{"alertname": "Inject", "agent": "victim", "cmd": cmdLabel, "semi": semiLabel},
		"startsAt": time.Now().UTC().Format(time.RFC3339),
	}}})
	if code, body := httpDo(t, "POST", r.base+"/api/v1/webhook", "", string(alert)); code != 401 {
		t.Errorf("webhook without token: %d %s, want 401", code, body)
	}
	if code, body := httpDo(t, "POST", r.base+"/api/v1/webhook", "tok", string(alert)); code != 202 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	runs := waitRuns(t, r.base, "tok", "agent=victim", 1, 30*time.Second)
	rec := runs[0]
	var repaired bool
	for _, s := range rec.Steps {
		if s.Name == "repair:always" {
			repaired = s.OK
		}
	}
	if !repaired || rec.Labels["cmd"] != cmdLabel || rec.Node != "n1" {
		t.Fatalf("run record %+v: want the repair step to have run for node n1 with the labels", rec)
	}
	seen, err := os.ReadFile(filepath.Join(work, "seen"))
	if err != nil {
		t.Fatalf("the repair script did not run: %v", err)
	}
	if want := cmdLabel + "\n" + semiLabel + "\n"; string(seen) != want {
		t.Errorf("script saw %q, want the labels verbatim %q", seen, want)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Error("$(touch ...) in a label was executed")
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("; rm -rf in a label removed the directory: %v", err)
	}

	// One registry: the engine's and the bridge's shared metrics, the
	// node's and the queue's, no duplicate registration.
	_, metrics := httpDo(t, "GET", r.base+"/metrics", "", "")
	for _, m := range []string{`medic_remediations_total{outcome="` + rec.Outcome + `",runbook="inject"} 1`, "medic_webhook_requests_total", "medic_agent_up", "medic_alerts_received_total"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// Reload: a broken file is refused with its error and changes nothing;
	// a good one is taken.
	os.WriteFile(filepath.Join(cfgDir, "broken.hcl"), []byte("runbook {"), 0o644)
	if code, body := httpDo(t, "POST", r.base+"/-/reload", "tok", ""); code != 500 || !strings.Contains(body, "broken.hcl") {
		t.Errorf("reload of a broken config: %d %q, want 500 naming broken.hcl", code, body)
	}
	os.Remove(filepath.Join(cfgDir, "broken.hcl"))
	os.WriteFile(filepath.Join(cfgDir, "more.hcl"), []byte(`runbook "later" {
  match { alertname = "Later" }
}
`), 0o644)
	if code, body := httpDo(t, "POST", r.base+"/-/reload", "tok", ""); code != 200 {
		t.Errorf("reload: %d %q", code, body)
	}
	later, _ := json.Marshal(map[string]any{"alerts": []map[string]any{{
		"status": "firing", "labels": map[string]string{"alertname": "Later", "agent": "victim"}, "startsAt": time.Now().UTC().Format(time.RFC3339),
	}}})
	if code, body := httpDo(t, "POST", r.base+"/api/v1/webhook", "tok", string(later)); code != 202 || !strings.Contains(body, `"accepted":1`) {
		t.Errorf("alert for the reloaded runbook: %d %s", code, body)
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run returned %v after stop", err)
	}
}

// startDemo runs RunDemo with this test binary as the demo agents until
// the test ends; it returns the bridge's base URL, the printed
// instructions and a stop that returns RunDemo's error.
func startDemo(t *testing.T) (base, text string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan []string, 1)
	var out strings.Builder
	errc := make(chan error, 1)
	go func() {
		errc <- RunDemo(ctx, DemoOptions{Listen: "127.0.0.1:0", Executable: os.Args[0], Out: &out,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnListening: func(a []string) { addrs <- a }})
	}()
	select {
	case a := <-addrs:
		base = "http://" + a[0]
	case err := <-errc:
		cancel()
		t.Fatalf("RunDemo: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("demo did not start")
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() { stop() })
	return base, out.String(), stop
}

// TestWebConfigBasicAuth: with --web.config.file and no token the bridge
// may listen anywhere, and exporter-toolkit's basic auth guards everything.
func TestWebConfigBasicAuth(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte("runbook \"r\" {\n  match { alertname = \"X\" }\n}\n"), 0o644)
	webCfg := filepath.Join(dir, "web.yml")
	// bcrypt of "am-pass"
	os.WriteFile(webCfg, []byte("basic_auth_users:\n  alertmanager: $2a$04$vb5mp6VpfNWFmtKWcarc3OOXN.zZfhixNsG9MIcdY.mk8GJ6iF7Vq\n"), 0o600)
	if _, _, err := checkExposure([]string{":9095"}, false, webCfg); err != nil {
		t.Fatalf("a web config should allow a non-loopback address: %v", err)
	}
	r := start(t, Options{ConfigFile: dir, RedisURL: rs.URL(), ListenAddresses: []string{"127.0.0.1:0"}, WebConfigFile: webCfg})
	body := `{"alerts":[{"status":"firing","labels":{"alertname":"Y"},"startsAt":"2026-01-01T00:00:00Z"}]}`
	checkBasicAuth(t, "POST", r.base+"/api/v1/webhook", body, []authCase{
		{"", "", 401}, {"alertmanager", "wrong", 401}, {"alertmanager", "am-pass", 202},
	})
}

type authCase struct {
	user, pass string
	code       int
}

// checkBasicAuth sends one request per case, with the case's basic auth
// (none when user is empty), and checks the status code.
func checkBasicAuth(t *testing.T, method, url, body string, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s as %q/%q: %d, want %d", method, url, tc.user, tc.pass, resp.StatusCode, tc.code)
		}
	}
}

// A demo on a busy port says what is most likely wrong and what to do.
func TestDemoBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = RunDemo(context.Background(), DemoOptions{Listen: l.Addr().String(), Executable: os.Args[0], Out: io.Discard,
		Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "address already in use") ||
		!strings.Contains(err.Error(), "is another medic demo running? choose another with --web.listen-address") {
		t.Fatalf("RunDemo on a busy port = %v, want the listen error with a hint", err)
	}
}
