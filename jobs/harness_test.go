package jobs_test

// The consumer's and reclaim's tests feed their streams through the real
// producer, the bridge's webhook, so that what they consume is what a node
// gets in production. This is the bridge's own test harness, trimmed.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/bridge"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

const testToken = "s3cret-token"

const testHCL = `
agent "a1" {
  node    = "n1"
  command = ["/bin/sleep", "3600"]
}

agent "a2" {
  node    = "n2"
  command = ["/bin/sleep", "3600"]
}

runbook "recover" {
  match { alertname = "AgentDown" }
  verify {
    attempts = 1
    interval = "10ms"
  }
}
`

// routingHCL escalates AgentDown runs to ESCALATE_URL.
const routingHCL = `
agent "a1" {
  node    = "n1"
  command = ["/bin/sleep", "3600"]
}

runbook "recover" {
  match { alertname = "AgentDown" }
  escalate { webhook = "http://ESCALATE_URL/hook" }
}
`

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type testBridge struct {
	*bridge.Bridge
	opts  bridge.Options
	srv   *httptest.Server
	redis *redistest.Server
	c     redis.UniversalClient
}

func startTestBridge(t *testing.T, src string, mod func(*bridge.Options)) *testBridge {
	t.Helper()
	rs := redistest.Start(t, redistest.Options{AOF: true})
	c := rs.Client()
	cfg, diags := hcl.LoadSources([]hcl.Source{{Name: "test.hcl", Bytes: []byte(src)}})
	if diags.HasErrors() {
		t.Fatalf("load test config: %v", diags)
	}
	o := bridge.Options{Client: c, Config: func() *hcl.Config { return cfg }, Token: testToken, MaxBody: 64 << 10}
	if mod != nil {
		mod(&o)
	}
	tb := &testBridge{Bridge: bridge.New(o), opts: o, redis: rs, c: c}
	if tb.opts.Keys == (jobs.Keys{}) {
		tb.opts.Keys = jobs.Keys{Prefix: keys.DefaultPrefix}
	}
	mux := http.NewServeMux()
	tb.Register(mux)
	tb.srv = httptest.NewServer(mux)
	t.Cleanup(tb.srv.Close)
	t.Cleanup(tb.Wait)
	return tb
}

// post sends a webhook body and returns the status and the decoded JSON.
func (tb *testBridge) post(t *testing.T, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", tb.srv.URL+"/api/v1/webhook", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, m
}

// alertJSON is one alert of a webhook payload.
type alertJSON struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	StartsAt    string            `json:"startsAt"`
	Fingerprint string            `json:"fingerprint,omitempty"`
}

func payload(groupStatus string, alerts ...alertJSON) string {
	data, _ := json.Marshal(map[string]any{"version": "4", "status": groupStatus, "receiver": "medic", "alerts": alerts})
	return string(data)
}

func firing(agent string, fp string, startsAt time.Time) alertJSON {
	return alertJSON{Status: "firing", Labels: map[string]string{"alertname": "AgentDown", "agent": agent},
		StartsAt: startsAt.Format(time.RFC3339Nano), Fingerprint: fp}
}

func decodeOne(t *testing.T, a alertJSON) []alert.Alert {
	t.Helper()
	alerts, err := alert.Decode([]byte(payload(a.Status, a)))
	if err != nil {
		t.Fatal(err)
	}
	return alerts
}

func readJobs(t *testing.T, c redis.UniversalClient, node string) []jobs.Job {
	t.Helper()
	msgs, err := c.XRange(context.Background(), jobs.Keys{}.Jobs(node), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []jobs.Job
	for _, m := range msgs {
		var j jobs.Job
		if err := json.Unmarshal([]byte(m.Values["job"].(string)), &j); err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

// escalationSink is an escalation webhook that keeps what it receives.
type escalationSink struct {
	*httptest.Server
	mu  sync.Mutex
	got []runbooks.Escalation
}

func newEscalationSink(t *testing.T) *escalationSink {
	s := &escalationSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e runbooks.Escalation
		_ = json.NewDecoder(r.Body).Decode(&e)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.got = append(s.got, e)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *escalationSink) delivered() []runbooks.Escalation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]runbooks.Escalation(nil), s.got...)
}
