package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

const testToken = "s3cret-token"

type testBridge struct {
	*Bridge
	srv   *httptest.Server
	redis *redistest.Server
	c     redis.UniversalClient
	reg   *prometheus.Registry
	cfg   *hcl.Config
}

func startTestBridge(t *testing.T, src string, mod func(*Options)) *testBridge {
	t.Helper()
	rs := redistest.Start(t, redistest.Options{AOF: true})
	c := rs.Client()
	tb := &testBridge{redis: rs, c: c, reg: prometheus.NewRegistry(), cfg: loadTestConfig(t, src)}
	o := Options{
		Client: c, Config: func() *hcl.Config { return tb.cfg }, Token: testToken,
		Metrics: NewMetrics(tb.reg, runbooks.NewMetrics(tb.reg)), MaxBody: 64 << 10,
	}
	if mod != nil {
		mod(&o)
	}
	tb.Bridge = New(o)
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
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    string            `json:"startsAt"`
	EndsAt      string            `json:"endsAt,omitempty"`
	Fingerprint string            `json:"fingerprint,omitempty"`
}

func payload(groupStatus string, alerts ...alertJSON) string {
	m := map[string]any{
		"version": "4", "status": groupStatus, "receiver": "medic", "groupKey": "{}:{}",
		"truncatedAlerts": 0, "groupLabels": map[string]string{}, "commonLabels": map[string]string{},
		"externalURL": "http://am", "alerts": alerts, "someFutureField": []int{1},
	}
	data, _ := json.Marshal(m)
	return string(data)
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func firing(agent string, fp string, startsAt time.Time) alertJSON {
	return alertJSON{Status: "firing", Labels: map[string]string{"alertname": "AgentDown", "agent": agent},
		StartsAt: startsAt.Format(time.RFC3339Nano), Fingerprint: fp}
}

func counts(a, d, i int) map[string]any {
	return map[string]any{"accepted": float64(a), "duplicates": float64(d), "ignored": float64(i)}
}

func TestWebhookBadInput(t *testing.T) {
	tb := startTestBridge(t, testHCL, func(o *Options) { o.MaxBody = 4 << 10 })
	bearer := "Bearer " + testToken
	good := payload("firing", firing("a1", "0123456789abcdef", t0))
	huge := payload("firing", alertJSON{Status: "firing", Labels: map[string]string{"alertname": "x", "big": strings.Repeat("x", 5<<10)}, StartsAt: t0.Format(time.RFC3339)})
	for _, tc := range []struct {
		name, token, body string
		code              int
		err               string
	}{
		{"no token", "", good, 401, "unauthenticated"},
		{"wrong token", "Bearer nope", good, 401, "unauthenticated"},
		{"token prefix", "Bearer " + testToken[:5], good, 401, "unauthenticated"},
		{"basic scheme", "Basic " + testToken, good, 401, "unauthenticated"},
		{"over the body limit", bearer, huge, 413, "over the limit of 4096 bytes"},
		{"empty body", bearer, "", 400, "body: empty"},
		{"not json", bearer, "{alerts:", 400, "body: "},
		{"alerts missing", bearer, `{"version":"4","status":"firing"}`, 400, "alerts: missing"},
		{"alerts null", bearer, `{"alerts":null}`, 400, "alerts: missing"},
		{"alerts not an array", bearer, `{"alerts":{}}`, 400, "body: "},
		{"status missing", bearer, `{"alerts":[{"labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`, 400, "alerts[0].status: missing"},
		{"status unknown", bearer, `{"alerts":[{"status":"pending","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`, 400, `alerts[0].status: "pending"`},
		{"labels missing", bearer, `{"alerts":[{"status":"firing","startsAt":"2026-01-01T00:00:00Z"}]}`, 400, "alerts[0].labels: missing"},
		{"label value not a string", bearer, `{"alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-01-01T00:00:00Z"}]}`, 400, "alerts[0].labels: number is not string"},
		{"startsAt missing in the third alert", bearer, payload("firing", firing("a1", "", t0), firing("a1", "", t0), alertJSON{Status: "firing", Labels: map[string]string{"a": "b"}}), 400, "alerts[2].startsAt: missing"},
		{"startsAt malformed", bearer, `{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"yesterday"}]}`, 400, `alerts[0].startsAt: "yesterday" is not an RFC 3339 time`},
		{"fingerprint not hex", bearer, `{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"zz:{x}"}]}`, 400, "alerts[0].fingerprint"},
		{"good with unknown fields", bearer, good, 202, ""},
		{"empty alerts", bearer, `{"alerts":[]}`, 202, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := tb.post(t, tc.token, tc.body)
			if code != tc.code {
				t.Fatalf("code %d, want %d (body %v)", code, tc.code, body)
			}
			if tc.err != "" {
				msg, _ := body["error"].(string)
				if !strings.Contains(msg, tc.err) {
					t.Errorf("error %q, want it to contain %q", msg, tc.err)
				}
			}
		})
	}
	// Health endpoints stay open without the token; reads (run records
	// hold script output) and reload don't.
	for path, want := range map[string]int{"/-/healthy": 200, "/-/ready": 200, "/api/v1/runs": 401, "/api/v1/runs/none": 401} {
		resp, err := http.Get(tb.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, _ := http.Post(tb.srv.URL+"/-/reload", "", nil)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("POST /-/reload without token = %d, want 401", resp.StatusCode)
	}
	// Only the one good payload reached Redis.
	if n := tb.c.XLen(context.Background(), "medic:{node:n1}:jobs").Val(); n != 1 {
		t.Errorf("jobs queued = %d, want 1", n)
	}
	want := `
# HELP medic_webhook_requests_total Alertmanager webhook requests by HTTP status code.
# TYPE medic_webhook_requests_total counter
medic_webhook_requests_total{code="202"} 2
medic_webhook_requests_total{code="400"} 12
medic_webhook_requests_total{code="401"} 4
medic_webhook_requests_total{code="413"} 1
`
	if err := testutil.GatherAndCompare(tb.reg, strings.NewReader(want), "medic_webhook_requests_total"); err != nil {
		t.Error(err)
	}
}

// readJobs returns the jobs on a node's stream.
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

func TestWebhookEpisodes(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	send := func(group string, alerts ...alertJSON) map[string]any {
		t.Helper()
		code, body := tb.post(t, bearer, payload(group, alerts...))
		if code != 202 {
			t.Fatalf("code %d: %v", code, body)
		}
		return body
	}
	other := alertJSON{Status: "firing", Labels: map[string]string{"alertname": "Unrelated"}, StartsAt: t0.Format(time.RFC3339)}

	// Fan out per alert, each with its own status: the group says resolved.
	if d := cmp.Diff(counts(2, 0, 1), send("resolved", firing("a1", "aaaa", t0), firing("a2", "bbbb", t0), other)); d != "" {
		t.Errorf("first notification -want +got:\n%s", d)
	}
	// Re-notification (same episodes) and an HA peer's copy: duplicates.
	if d := cmp.Diff(counts(0, 2, 0), send("firing", firing("a1", "aaaa", t0), firing("a2", "bbbb", t0))); d != "" {
		t.Errorf("re-notification -want +got:\n%s", d)
	}
	// A new startsAt is a new episode.
	t1 := t0.Add(time.Hour)
	if d := cmp.Diff(counts(1, 0, 0), send("firing", firing("a1", "aaaa", t1))); d != "" {
		t.Errorf("new episode -want +got:\n%s", d)
	}
	j1, j2 := readJobs(t, tb.c, "n1"), readJobs(t, tb.c, "n2")
	if len(j1) != 2 || len(j2) != 1 {
		t.Fatalf("jobs n1=%d n2=%d, want 2 and 1", len(j1), len(j2))
	}
	if j := j1[0]; j.Runbook != "recover" || j.Agent != "a1" || j.Node != "n1" || j.Alert.Fingerprint != "aaaa" ||
		!j.Alert.StartsAt.Equal(t0) || j.Deadline.Sub(j.Enqueued) != jobs.DefaultJobDeadline || j.ID == "" {
		t.Errorf("job = %+v", j)
	}
	if v := tb.c.Get(ctx, jobs.Keys{}.Dedup("n1", "aaaa", t0)).Val(); v != "q:"+j1[0].ID {
		t.Errorf("dedup value %q, want q:%s", v, j1[0].ID)
	}
	if ttl := tb.c.PTTL(ctx, jobs.Keys{}.Dedup("n1", "aaaa", t0)).Val(); ttl <= 23*time.Hour || ttl > jobs.DefaultDedupTTL {
		t.Errorf("dedup TTL %v", ttl)
	}

	// Resolved before the node started it: cancelled, and recorded.
	res := firing("a2", "bbbb", t0)
	res.Status = "resolved"
	if d := cmp.Diff(counts(1, 0, 0), send("resolved", res)); d != "" {
		t.Errorf("resolve -want +got:\n%s", d)
	}
	rec, err := tb.Store().Get(ctx, j2[0].ID)
	if err != nil {
		t.Fatalf("cancelled record: %v", err)
	}
	if rec.Outcome != runbooks.OutcomeCancelled || rec.Agent != "a2" || rec.Node != "n2" {
		t.Errorf("cancelled record = %+v", rec)
	}
	if v := tb.c.Get(ctx, jobs.Keys{}.Dedup("n2", "bbbb", t0)).Val(); v != "c:"+j2[0].ID {
		t.Errorf("dedup value after resolve %q", v)
	}
	send("resolved", res) // a repeat changes nothing
	if runs, _ := tb.Store().List(ctx, jobs.RunFilter{}); len(runs) != 1 {
		t.Errorf("runs after repeated resolve: %d, want 1", len(runs))
	}

	// Resolved before any firing was seen: the late firing is a duplicate.
	late := firing("a1", "cccc", t0)
	late.Status = "resolved"
	send("resolved", late)
	late.Status = "firing"
	if d := cmp.Diff(counts(0, 1, 0), send("firing", late)); d != "" {
		t.Errorf("late firing -want +got:\n%s", d)
	}

	// A missing fingerprint is computed from the labels as Alertmanager does.
	nofp := firing("a1", "", t0)
	send("firing", nofp)
	j1 = readJobs(t, tb.c, "n1")
	if got, want := j1[len(j1)-1].Alert.Fingerprint, "d2a5bf7e4ff1ddac"; len(got) != 16 || got != fingerprintOf(nofp.Labels) {
		t.Errorf("computed fingerprint %q, want %q (e.g. %s)", got, fingerprintOf(nofp.Labels), want)
	}

	wantMetrics := `
# HELP medic_alerts_deduplicated_total Firing alerts whose episode (fingerprint + startsAt) was already taken.
# TYPE medic_alerts_deduplicated_total counter
medic_alerts_deduplicated_total 3
# HELP medic_alerts_received_total Alerts received by the webhook, by each alert's own status.
# TYPE medic_alerts_received_total counter
medic_alerts_received_total{status="firing"} 8
medic_alerts_received_total{status="resolved"} 3
# HELP medic_remediations_total Remediation runs by runbook and outcome.
# TYPE medic_remediations_total counter
medic_remediations_total{outcome="cancelled",runbook="recover"} 1
`
	if err := testutil.GatherAndCompare(tb.reg, strings.NewReader(wantMetrics),
		"medic_alerts_deduplicated_total", "medic_alerts_received_total", "medic_remediations_total"); err != nil {
		t.Error(err)
	}
}

func fingerprintOf(l map[string]string) string { return alert.Fingerprint(l) }

func TestWebhookUnroutableEscalates(t *testing.T) {
	var mu sync.Mutex
	var got []runbooks.Escalation
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e runbooks.Escalation
		_ = json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer hook.Close()
	src := strings.ReplaceAll(testHCL, "http://ESCALATE_URL/hook", hook.URL+"/hook")
	tb := startTestBridge(t, src, nil)
	lost := alertJSON{Status: "firing", Labels: map[string]string{"alertname": "Lost", "agent": "floating"}, StartsAt: t0.Format(time.RFC3339)}
	for range 2 { // the second is an HA duplicate
		if code, body := tb.post(t, "Bearer "+testToken, payload("firing", lost)); code != 202 {
			t.Fatalf("code %d %v", code, body)
		}
	}
	tb.Wait()
	runs, err := tb.Store().List(context.Background(), jobs.RunFilter{Outcome: runbooks.OutcomeUnroutable})
	if err != nil || len(runs) != 1 {
		t.Fatalf("unroutable runs = %d, %v; want 1", len(runs), err)
	}
	r := runs[0]
	if r.Runbook != "lost" || r.Agent != "floating" || !strings.Contains(r.Reason, "no node attribute") ||
		len(r.Steps) != 1 || r.Steps[0].Name != "escalate" || !r.Steps[0].OK {
		t.Errorf("record = %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Run == nil || got[0].Run.ID != r.ID || got[0].Alert.Labels["agent"] != "floating" {
		t.Errorf("escalations = %+v, want one for run %s", got, r.ID)
	}
	if v := testutil.ToFloat64(tb.metrics.unroutable); v != 1 {
		t.Errorf("medic_alerts_unroutable_total = %v, want 1", v)
	}
}

func TestWebhookRedisFailureLeavesNoDedupKey(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	body := payload("firing", firing("a1", "abcd", t0))
	dedup := jobs.Keys{}.Dedup("n1", "abcd", t0)

	// The XADD fails inside the script (the stream key has the wrong type):
	// 503, and the episode is not taken.
	tb.c.Set(ctx, jobs.Keys{}.Jobs("n1"), "not a stream", 0)
	if code, m := tb.post(t, bearer, body); code != 503 {
		t.Fatalf("code %d %v, want 503", code, m)
	}
	if n := tb.c.Exists(ctx, dedup).Val(); n != 0 {
		t.Fatal("dedup key left behind by a failed enqueue")
	}
	tb.c.Del(ctx, jobs.Keys{}.Jobs("n1"))

	// Redis down: 503 (Alertmanager retries); ready says so, healthy not.
	tb.redis.Kill()
	if code, m := tb.post(t, bearer, body); code != 503 {
		t.Fatalf("code %d %v with Redis down, want 503", code, m)
	}
	for path, want := range map[string]int{"/-/healthy": 200, "/-/ready": 503} {
		resp, err := http.Get(tb.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s with Redis down = %d, want %d", path, resp.StatusCode, want)
		}
	}
	tb.redis.Restart()
	if code, m := tb.post(t, bearer, body); code != 202 || fmt.Sprint(m["accepted"]) != "1" {
		t.Fatalf("after restart: %d %v, want accepted 1", code, m)
	}
}

// Concurrent webhooks: distinct episodes are all queued (batched into
// shared pipelines), and copies of one episode are queued exactly once.
func TestWebhookConcurrent(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for i := range 200 {
		wg.Go(func() {
			fp := fmt.Sprintf("%04x", i%100+1) // each episode twice
			code, m := tb.post(t, "Bearer "+testToken, payload("firing", firing("a1", fp, t0)))
			if code != 202 {
				t.Errorf("code %d %v", code, m)
				return
			}
			mu.Lock()
			accepted += int(m["accepted"].(float64))
			mu.Unlock()
		})
	}
	wg.Wait()
	if accepted != 100 {
		t.Errorf("accepted %d, want 100 (200 notifications of 100 episodes)", accepted)
	}
	if n := len(readJobs(t, tb.c, "n1")); n != 100 {
		t.Errorf("%d jobs queued, want 100", n)
	}
}
