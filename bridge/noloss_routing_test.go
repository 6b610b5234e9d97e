package bridge

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// escalationSink is an escalation webhook that keeps what it receives and
// answers the codes of fail first (then 200).
type escalationSink struct {
	*httptest.Server
	mu   sync.Mutex
	got  []runbooks.Escalation
	hits int
	fail []int
}

func newEscalationSink(t *testing.T, fail ...int) *escalationSink {
	s := &escalationSink{fail: fail}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e runbooks.Escalation
		_ = json.NewDecoder(r.Body).Decode(&e)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hits++
		if s.hits <= len(s.fail) {
			w.WriteHeader(s.fail[s.hits-1])
			return
		}
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

// An alert for a node that never wrote a snapshot, or last wrote one
// longer ago than the node silence, is recorded unroutable at once (node
// and last-seen time named) and escalated; nothing is queued for it. A
// live node, and one whose consumer started before its first snapshot,
// get their jobs.
func TestRoutingDeadNodes(t *testing.T) {
	sink := newEscalationSink(t)
	src := strings.ReplaceAll(routingHCL, "http://ESCALATE_URL", sink.URL)
	tb := startTestBridge(t, src, func(o *Options) { o.NodeSilence = time.Minute })
	ctx := context.Background()
	k := tb.opts.Keys
	now := time.Now()
	tb.c.Set(ctx, keys.Seen(keys.DefaultPrefix, "stale"), strconv.FormatInt(now.Add(-time.Hour).UnixMilli(), 10), 0)
	tb.c.Set(ctx, keys.Seen(keys.DefaultPrefix, "live"), strconv.FormatInt(now.UnixMilli(), 10), 0)
	tb.c.XGroupCreateMkStream(ctx, k.Jobs("starting"), "medic", "0")

	alert := func(node, fp string) alertJSON {
		a := firing("a1", fp, t0)
		a.Labels["node"] = node
		return a
	}
	body := payload("firing", alert("ghost", "01"), alert("stale", "02"), alert("live", "03"), alert("starting", "04"))
	for range 2 { // the second is an HA peer's or a retry: duplicates
		if code, resp := tb.post(t, "Bearer "+testToken, body); code != 202 {
			t.Fatalf("webhook: %d %v", code, resp)
		}
	}
	tb.Wait()
	for node, want := range map[string]int64{"ghost": 0, "stale": 0, "live": 1, "starting": 1} {
		if n := tb.c.XLen(ctx, k.Jobs(node)).Val(); n != want {
			t.Errorf("jobs queued for %s: %d, want %d", node, n, want)
		}
	}
	runs, err := tb.Store().List(ctx, jobs.RunFilter{Outcome: runbooks.OutcomeUnroutable})
	if err != nil || len(runs) != 2 {
		t.Fatalf("unroutable records: %d (%v), want 2", len(runs), err)
	}
	byNode := map[string]*runbooks.RunRecord{}
	for _, r := range runs {
		byNode[r.Node] = r
	}
	if r := byNode["ghost"]; r == nil || !strings.Contains(r.Reason, "node ghost is unknown") || r.Labels["node"] != "ghost" {
		t.Errorf("ghost record: %+v", r)
	}
	if r := byNode["stale"]; r == nil || !strings.Contains(r.Reason, "node stale was last seen at") || !strings.Contains(r.Reason, "1h0m0s ago") {
		t.Errorf("stale record: %+v", r)
	}
	for _, r := range byNode {
		if len(r.Steps) != 1 || r.Steps[0].Name != "escalate" || !r.Steps[0].OK {
			t.Errorf("record %s: steps %+v, want one delivered escalation", r.Node, r.Steps)
		}
	}
	got := sink.delivered()
	if len(got) != 2 {
		t.Fatalf("escalations delivered: %d, want 2", len(got))
	}
	for _, e := range got {
		if e.Run == nil || e.Run.Outcome != runbooks.OutcomeUnroutable || byNode[e.Run.Node] == nil {
			t.Errorf("escalation %+v", e)
		}
	}
}

// With the check off (NodeSilence 0) every node is routed, as before.
func TestRoutingNodeSilenceOff(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	a := firing("a1", "05", t0)
	a.Labels["node"] = "ghost"
	if code, resp := tb.post(t, "Bearer "+testToken, payload("firing", a)); code != 202 {
		t.Fatalf("webhook: %d %v", code, resp)
	}
	if n := tb.c.XLen(context.Background(), tb.opts.Keys.Jobs("ghost")).Val(); n != 1 {
		t.Fatalf("jobs queued for ghost: %d, want 1", n)
	}
}

// An escalation whose webhook answers 500 twice is retried with backoff
// and delivered; one that never delivers is given up when its retries run
// out, and the record says which. medic_escalations_total counts both.
func TestEscalationRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   []int
		status string
		counts map[string]float64
	}{
		{"delivered at the third attempt", []int{500, 500}, runbooks.EscalationDelivered, map[string]float64{"retried": 2, "delivered": 1}},
		{"never delivered", []int{500, 502, 503, 500, 500, 500, 500, 500, 500, 500, 500, 500}, runbooks.EscalationFailed, map[string]float64{"failed": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newEscalationSink(t, tc.fail...)
			src := strings.ReplaceAll(routingHCL, "http://ESCALATE_URL", sink.URL)
			tb := startTestBridge(t, src, func(o *Options) {
				o.NodeSilence = time.Minute
				o.EscalationBackoff = 20 * time.Millisecond
				o.EscalationRetryFor = 200 * time.Millisecond
			})
			a := firing("a1", "0d", t0)
			a.Labels["node"] = "ghost"
			if code, resp := tb.post(t, "Bearer "+testToken, payload("firing", a)); code != 202 {
				t.Fatalf("webhook: %d %v", code, resp)
			}
			tb.Wait()
			runs, _ := tb.Store().List(context.Background(), jobs.RunFilter{Outcome: runbooks.OutcomeUnroutable})
			if len(runs) != 1 {
				t.Fatalf("records: %d, want 1", len(runs))
			}
			r := runs[0]
			if r.Escalation != tc.status || len(r.Steps) != 1 || r.Steps[0].OK != (tc.status == runbooks.EscalationDelivered) {
				t.Errorf("record: escalation %q, steps %+v; want %q", r.Escalation, r.Steps, tc.status)
			}
			if tc.status == runbooks.EscalationDelivered && len(sink.delivered()) != 1 {
				t.Errorf("delivered %d escalations, want 1", len(sink.delivered()))
			}
			for result, want := range tc.counts {
				if got := testutil.ToFloat64(tb.metrics.runs.Escalations().WithLabelValues("recover", result)); got != want && !(result == "retried" && tc.status == runbooks.EscalationFailed) {
					t.Errorf("medic_escalations_total{result=%q} = %v, want %v", result, got, want)
				}
			}
			if tc.status == runbooks.EscalationFailed {
				if got := testutil.ToFloat64(tb.metrics.runs.Escalations().WithLabelValues("recover", "retried")); got < 1 {
					t.Errorf("medic_escalations_total{result=\"retried\"} = %v, want at least 1", got)
				}
			}
		})
	}
}

// The status page shows each run's escalation delivery.
func TestStatusPageEscalationStatus(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	c := rs.Client()
	ctx := context.Background()
	store := jobs.NewRunStore(c, jobs.StoreOptions{})
	for i, st := range []string{runbooks.EscalationDelivered, runbooks.EscalationRetrying, runbooks.EscalationFailed} {
		rec := &runbooks.RunRecord{ID: "run-" + st, Runbook: "recover", Agent: "a1", Node: "n1", Trigger: "alert",
			Outcome: runbooks.OutcomeEscalated, Escalation: st, Started: time.Now().Add(time.Duration(i) * time.Second), Steps: []runbooks.Step{}}
		if err := store.Save(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	h := NewStatusPage(StatusOptions{Runs: store, Redis: c})
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	body := rr.Body.String()
	for _, st := range []string{"delivered", "retrying", "failed"} {
		if !strings.Contains(body, `data-escalation="`+st+`"`) || !strings.Contains(body, ">page "+st+"</span>") {
			t.Errorf("status page does not show escalation %s", st)
		}
	}
}
