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

	"github.com/medicops/medic/exporter"
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
	tb.c.Set(ctx, exporter.SeenKey(DefaultPrefix, "stale"), strconv.FormatInt(now.Add(-time.Hour).UnixMilli(), 10), 0)
	tb.c.Set(ctx, exporter.SeenKey(DefaultPrefix, "live"), strconv.FormatInt(now.UnixMilli(), 10), 0)
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
	runs, err := tb.Store().List(ctx, RunFilter{Outcome: runbooks.OutcomeUnroutable})
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
