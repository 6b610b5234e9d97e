package jobs_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/bridge"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// A job nobody consumes is taken out of its stream once its deadline has
// passed, recorded expired and escalated, by exactly one of two bridges
// reclaiming side by side; the stream is left empty.
func TestReclaimExpiredJobs(t *testing.T) {
	sink := newEscalationSink(t)
	src := strings.ReplaceAll(routingHCL, "http://ESCALATE_URL", sink.URL)
	tb := startTestBridge(t, src, func(o *bridge.Options) { o.JobDeadline = 100 * time.Millisecond })
	other := bridge.New(bridge.Options{Client: tb.c, Config: tb.opts.Config, JobDeadline: 100 * time.Millisecond})
	ctx := context.Background()
	k := tb.opts.Keys

	a := firing("a1", "0a", t0)
	a.Labels["node"] = "ghost"
	b := firing("a1", "0b", t0)
	b.Labels["node"] = "ghost"
	if code, resp := tb.post(t, "Bearer "+testToken, payload("firing", a, b)); code != 202 {
		t.Fatalf("webhook: %d %v", code, resp)
	}
	// b resolves before its deadline: cancelled, its record stored by the
	// bridge, its entry left for a node that never comes.
	b.Status = "resolved"
	if code, resp := tb.post(t, "Bearer "+testToken, payload("resolved", b)); code != 202 {
		t.Fatalf("webhook: %d %v", code, resp)
	}
	if n := tb.c.XLen(ctx, k.Jobs("ghost")).Val(); n != 2 {
		t.Fatalf("queued %d jobs, want 2", n)
	}
	// Before the deadline nothing is taken.
	tb.ReclaimOnce(ctx)
	if n := tb.c.XLen(ctx, k.Jobs("ghost")).Val(); n != 2 {
		t.Fatalf("before the deadline: %d jobs left, want 2", n)
	}
	time.Sleep(150 * time.Millisecond)
	other.Reclaimer().Routed("ghost")
	var wg sync.WaitGroup
	for _, br := range []*bridge.Bridge{tb.Bridge, other} {
		wg.Go(func() { br.ReclaimOnce(ctx) })
	}
	wg.Wait()
	tb.Wait()
	other.Wait()

	if n := tb.c.XLen(ctx, k.Jobs("ghost")).Val(); n != 0 {
		t.Errorf("%d entries left in the stream, want 0", n)
	}
	if n := tb.c.ZCard(ctx, k.Outbox("ghost")).Val(); n != 0 {
		t.Errorf("%d jobs left in the outbox, want 0", n)
	}
	runs, err := tb.Store().List(ctx, jobs.RunFilter{Outcome: runbooks.OutcomeExpired})
	if err != nil || len(runs) != 1 {
		t.Fatalf("expired records: %d (%v), want 1", len(runs), err)
	}
	r := runs[0]
	if r.Fingerprint != "0a" || r.Node != "ghost" || !strings.Contains(r.Reason, "past its deadline") ||
		len(r.Steps) != 1 || !r.Steps[0].OK {
		t.Errorf("record: %+v", r)
	}
	if got := sink.delivered(); len(got) != 1 || got[0].Run == nil || got[0].Run.ID != r.ID {
		t.Errorf("escalations: %+v, want exactly one for %s", got, r.ID)
	}
	if v := tb.c.Get(ctx, k.Dedup("ghost", "0a", t0)).Val(); v != "d:"+r.ID {
		t.Errorf("episode state %q, want d:%s", v, r.ID)
	}
	if cancelled, _ := tb.Store().List(ctx, jobs.RunFilter{Outcome: runbooks.OutcomeCancelled}); len(cancelled) != 1 {
		t.Errorf("cancelled records: %d, want 1", len(cancelled))
	}
}

// A job a bridge took and did not finish with (it died before escalating)
// is taken again from the outbox once its lease has run out.
func TestReclaimOutboxAfterBridgeDied(t *testing.T) {
	sink := newEscalationSink(t)
	src := strings.ReplaceAll(routingHCL, "http://ESCALATE_URL", sink.URL)
	tb := startTestBridge(t, src, nil)
	ctx := context.Background()
	now := time.Now()
	job := jobs.Job{ID: runbooks.NewRunID(now), Runbook: "recover", Agent: "a1", Node: "gone",
		Alert:    alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "AgentDown", "node": "gone"}, Fingerprint: "0c", StartsAt: t0},
		Enqueued: now.Add(-time.Hour), Deadline: now.Add(-50 * time.Minute)}
	raw := mustJSON(t, &job)
	tb.c.ZAdd(ctx, tb.opts.Keys.Outbox("gone"), redis.Z{Score: float64(now.Add(-time.Second).UnixMilli()), Member: raw})
	tb.c.ZAdd(ctx, tb.opts.Keys.Outbox("held"), redis.Z{Score: float64(now.Add(time.Hour).UnixMilli()), Member: raw})
	tb.c.SAdd(ctx, keys.DefaultPrefix+"nodes", "gone", "held")
	tb.ReclaimOnce(ctx)
	tb.Wait()
	rec, err := tb.Store().Get(ctx, job.ID)
	if err != nil || rec.Outcome != runbooks.OutcomeExpired {
		t.Fatalf("record %+v, %v; want expired", rec, err)
	}
	if got := sink.delivered(); len(got) != 1 {
		t.Errorf("escalations: %d, want 1", len(got))
	}
	if n := tb.c.ZCard(ctx, tb.opts.Keys.Outbox("gone")).Val(); n != 0 {
		t.Errorf("outbox of gone: %d left, want 0", n)
	}
	if n := tb.c.ZCard(ctx, tb.opts.Keys.Outbox("held")).Val(); n != 1 {
		t.Errorf("outbox of held (lease running): %d left, want 1", n)
	}
}

// A job its node started (state r) is left alone while the node is live;
// once the node has been silent past the node silence, it is reclaimed,
// recorded expired and escalated like a job never taken.
func TestReclaimStartedJobOfSilentNode(t *testing.T) {
	sink := newEscalationSink(t)
	src := strings.ReplaceAll(routingHCL, "http://ESCALATE_URL", sink.URL)
	tb := startTestBridge(t, src, func(o *bridge.Options) { o.JobDeadline = 50 * time.Millisecond; o.NodeSilence = time.Minute })
	ctx := context.Background()
	k := tb.opts.Keys
	seen := func(ago time.Duration) {
		tb.c.Set(ctx, k.Seen("n1"), time.Now().Add(-ago).UnixMilli(), 0)
	}
	seen(0)
	a := firing("a1", "0e", t0)
	a.Labels["node"] = "n1"
	if code, resp := tb.post(t, "Bearer "+testToken, payload("firing", a)); code != 202 {
		t.Fatalf("webhook: %d %v", code, resp)
	}
	dedup := k.Dedup("n1", "0e", t0)
	v := tb.c.Get(ctx, dedup).Val()
	tb.c.Set(ctx, dedup, "r:"+strings.TrimPrefix(v, "q:"), redis.KeepTTL) // the node started it
	time.Sleep(100 * time.Millisecond)

	tb.ReclaimOnce(ctx)
	tb.Wait()
	if n := tb.c.XLen(ctx, k.Jobs("n1")).Val(); n != 1 {
		t.Fatalf("live node: %d entries left, want its running job left alone", n)
	}
	seen(time.Hour)
	tb.ReclaimOnce(ctx)
	tb.Wait()
	if n := tb.c.XLen(ctx, k.Jobs("n1")).Val(); n != 0 {
		t.Errorf("silent node: %d entries left, want 0", n)
	}
	runs, _ := tb.Store().List(ctx, jobs.RunFilter{Outcome: runbooks.OutcomeExpired})
	if len(runs) != 1 || !strings.Contains(runs[0].Reason, "started the job and has been silent") || runs[0].Escalation != runbooks.EscalationDelivered {
		t.Fatalf("expired records: %+v", runs)
	}
	if len(sink.delivered()) != 1 {
		t.Errorf("pages: %d, want 1", len(sink.delivered()))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
