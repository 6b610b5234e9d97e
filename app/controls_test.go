package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/runbooks"
)

// TestServeSafety runs medic serve with a token against a real Redis: the
// reads need the token (metrics and health do not); a runbook in approve
// mode waits, visible as pending_approval, until it is approved over the
// API, then acts; a pause shows in /metrics and turns the next run into
// "paused"; a reset answers.
func TestServeSafety(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "cfg")
	os.MkdirAll(cfgDir, 0o755)
	os.WriteFile(filepath.Join(cfgDir, "estate.hcl"), []byte(fmt.Sprintf(`
agent "careful-agent" {
  node     = "n1"
  command  = ["/bin/sleep", "3600"]
  workdir  = %q
  watchdog = false
  probe "exec" {
    command = ["/bin/false"]
    timeout = "1s"
  }
}

agent "cfg-1" {
  node    = "n1"
  command = ["/bin/sleep", "3600"]
  watchdog = false
}

pool "switches" {
  agents     = ["cfg-1"]
  device_url = "http://127.0.0.1:1/${device}"
}

agent "cfg-2" {
  node    = "n1"
  command = ["/bin/sleep", "3600"]
  watchdog = false
}

pool "hostswitches" {
  agents     = ["cfg-2"]
  device_url = "http://${device}.switches.example/api/config"
}

runbook "careful" {
  match { alertname = "Careful" }
  mode         = "approve"
  approval_ttl = "5m"
  verify {
    attempts = 1
    interval = "10ms"
  }
}
`, dir)), 0o644)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
	r := start(t, Options{
		ConfigFile: cfgDir, RedisURL: rs.URL(), ListenAddresses: []string{"127.0.0.1:0"}, TokenFile: tokenFile, Node: "n1",
	})

	// Protected reads, open health and metrics.
	for _, tc := range []struct {
		path, token string
		code        int
	}{
		{"/api/v1/runs", "", 401}, {"/api/v1/runs", "tok", 200},
		{"/api/v1/pools/switches", "", 401}, {"/api/v1/pools/switches", "tok", 200},
		{"/api/v1/pause", "", 401}, {"/api/v1/pause", "tok", 200},
		{"/", "", 401}, {"/", "tok", 200},
		{"/metrics", "", 200}, {"/-/healthy", "", 200}, {"/-/ready", "", 200},
	} {
		if code, body := httpDo(t, "GET", r.base+tc.path, tc.token, ""); code != tc.code {
			t.Errorf("GET %s with token %q = %d, want %d: %.200s", tc.path, tc.token, code, tc.code, body)
		}
	}
	if code, body := httpDo(t, "POST", r.base+"/api/v1/pools/switches/configs", "", `{"device":"d1","payload":{}}`); code != 401 {
		t.Errorf("pool write without token = %d %s", code, body)
	}
	// A device ID that is not one DNS label cannot go where device_url
	// puts the device in the host (issue 15's SSRF); in a path it is data.
	for _, tc := range []struct {
		pool, device string
		code         int
	}{
		{"hostswitches", "127.0.0.1:18080/x#", 400}, {"hostswitches", "a.b", 400}, {"hostswitches", "sw-01", 201},
		{"switches", "../../admin?x=1#", 201},
	} {
		body, _ := json.Marshal(map[string]any{"device": tc.device, "payload": map[string]int{"v": 1}})
		if code, out := httpDo(t, "POST", r.base+"/api/v1/pools/"+tc.pool+"/configs", "tok", string(body)); code != tc.code {
			t.Errorf("publish %q to %s = %d %s, want %d", tc.device, tc.pool, code, out, tc.code)
		}
	}

	// Approve mode: the run waits as pending_approval, is approved, acts.
	fire := func(name string) {
		t.Helper()
		alert, _ := json.Marshal(map[string]any{"alerts": []map[string]any{{
			"status": "firing", "labels": map[string]string{"alertname": "Careful", "agent": "careful-agent", "n": name},
			"startsAt": time.Now().UTC().Format(time.RFC3339Nano),
		}}})
		if code, body := httpDo(t, "POST", r.base+"/api/v1/webhook", "tok", string(alert)); code != 202 {
			t.Fatalf("webhook: %d %s", code, body)
		}
	}
	fire("1")
	pending := waitRuns(t, r.base, "tok", "runbook=careful&outcome=pending_approval", 1, 20*time.Second)[0]
	if code, body := httpDo(t, "POST", r.base+"/api/v1/runs/"+pending.ID+"/approve", "", ""); code != 401 {
		t.Errorf("approve without token = %d %s", code, body)
	}
	code, body := httpDo(t, "POST", r.base+"/api/v1/runs/"+pending.ID+"/approve", "tok", `{"by":"alice","reason":"go"}`)
	if code != 200 || !strings.Contains(body, `"by":"alice"`) || !strings.Contains(body, `"approve":true`) {
		t.Fatalf("approve: %d %s", code, body)
	}
	if code, body := httpDo(t, "POST", r.base+"/api/v1/runs/"+pending.ID+"/reject", "tok", ""); code != 409 {
		t.Errorf("reject after approve = %d %s, want 409", code, body)
	}
	final := waitFinal(t, r.base, pending.ID, 30*time.Second)
	t.Logf("approved run: %s (%s), %d steps", final.Outcome, final.Reason, len(final.Steps))
	// The probe is /bin/false: once approved, the run restarts the agent,
	// verifies, and escalates.
	if final.Outcome != runbooks.OutcomeEscalated {
		t.Errorf("approved run ended %q (%s), want escalated after acting", final.Outcome, final.Reason)
	}

	// Pause: medic_paused says so and the next alert's run is "paused".
	code, body = httpDo(t, "POST", r.base+"/api/v1/pause", "tok", `{"runbook":"careful","for":"1h","reason":"maintenance"}`)
	if code != 200 {
		t.Fatalf("pause: %d %s", code, body)
	}
	if _, metrics := httpDo(t, "GET", r.base+"/metrics", "", ""); !strings.Contains(metrics, `medic_paused{runbook="careful"} 1`) || !strings.Contains(metrics, `medic_paused{runbook="*"} 0`) {
		t.Errorf("/metrics lacks the pause:\n%s", grepLines(metrics, "medic_paused"))
	}
	fire("2")
	waitRuns(t, r.base, "tok", "runbook=careful&outcome=paused", 1, 20*time.Second)
	if code, body := httpDo(t, "DELETE", r.base+"/api/v1/pause?runbook=careful", "tok", ""); code != 200 {
		t.Errorf("resume: %d %s", code, body)
	}
	if _, metrics := httpDo(t, "GET", r.base+"/metrics", "", ""); !strings.Contains(metrics, `medic_paused{runbook="careful"} 0`) {
		t.Errorf("/metrics after resume:\n%s", grepLines(metrics, "medic_paused"))
	}

	if code, body := httpDo(t, "POST", r.base+"/api/v1/agents/n1/careful-agent/reset", "tok", ""); code != 200 || !strings.Contains(body, `"reset":true`) {
		t.Errorf("reset: %d %s", code, body)
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run returned %v after stop", err)
	}
}

// waitFinal waits until run id has a final outcome.
func waitFinal(t *testing.T, base, id string, timeout time.Duration) runbooks.RunRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, body := httpDo(t, "GET", base+"/api/v1/runs/"+id, "tok", "")
		var rec runbooks.RunRecord
		_ = json.Unmarshal([]byte(body), &rec)
		if rec.Outcome != "" && rec.Outcome != runbooks.OutcomePendingApproval {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s has no final outcome after %s: %s", id, timeout, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// medic serve without --redis.url (and so medic demo): the controls run on
// the embedded store too.
func TestServeEmbeddedControls(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte("runbook \"r\" {\n  match { alertname = \"X\" }\n  mode = \"approve\"\n}\n"), 0o644)
	r := start(t, Options{ConfigFile: dir, ListenAddresses: []string{"127.0.0.1:0"}, Node: "n1"})
	if code, body := httpDo(t, "POST", r.base+"/api/v1/pause", "", `{"for":"10m","reason":"try"}`); code != 200 || !strings.Contains(body, `"by":"anonymous"`) {
		t.Fatalf("pause on the embedded store: %d %s", code, body)
	}
	if _, metrics := httpDo(t, "GET", r.base+"/metrics", "", ""); !strings.Contains(metrics, `medic_paused{runbook="*"} 1`) || !strings.Contains(metrics, `medic_paused{runbook="r"} 1`) {
		t.Errorf("/metrics:\n%s", grepLines(metrics, "medic_paused"))
	}
	if code, body := httpDo(t, "POST", r.base+"/api/v1/runs/nope/approve", "", ""); code != 404 {
		t.Errorf("approve unknown: %d %s", code, body)
	}
	if code, body := httpDo(t, "DELETE", r.base+"/api/v1/pause", "", ""); code != 200 || !strings.Contains(body, `"pauses":[]`) {
		t.Errorf("resume: %d %s", code, body)
	}
}

func TestWarnOpenHeartbeats(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		token bool
		warn  bool
	}{
		{[]string{":9095"}, true, true},
		{[]string{"127.0.0.1:9095", "10.0.0.1:9095"}, true, true},
		{[]string{"127.0.0.1:9095"}, true, false},
		{[]string{":9095"}, false, false}, // refused earlier by checkExposure
	} {
		var buf strings.Builder
		warnOpenHeartbeats(tc.addrs, tc.token, false, slog.New(slog.NewTextHandler(&buf, nil)))
		if got := strings.Contains(buf.String(), "heartbeat API"); got != tc.warn {
			t.Errorf("%v token=%v: warned %v, want %v: %s", tc.addrs, tc.token, got, tc.warn, buf.String())
		}
	}
}
