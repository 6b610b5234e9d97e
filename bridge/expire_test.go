package bridge

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// Closing the bridge cuts an expired job's escalation retries short and
// leaves the job in the outbox, so that it is escalated again.
func TestCloseLeavesUndeliveredInOutbox(t *testing.T) {
	defer func(g time.Duration) { closeGrace = g }(closeGrace)
	closeGrace = 100 * time.Millisecond
	fail := make([]int, 1000)
	for i := range fail {
		fail[i] = 503
	}
	sink := newEscalationSink(t, fail...)
	src := strings.ReplaceAll(routingHCL, "http://ESCALATE_URL", sink.URL)
	tb := startTestBridge(t, src, func(o *Options) { o.EscalationRetryFor = time.Hour; o.EscalationBackoff = 20 * time.Millisecond })
	ctx := context.Background()
	now := time.Now()
	job := jobs.Job{ID: runbooks.NewRunID(now), Runbook: "recover", Agent: "a1", Node: "gone",
		Alert:    alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "AgentDown", "node": "gone"}, Fingerprint: "0f", StartsAt: t0},
		Enqueued: now.Add(-time.Hour), Deadline: now.Add(-50 * time.Minute)}
	raw := mustJSON(t, &job)
	tb.c.ZAdd(ctx, tb.opts.Keys.Outbox("gone"), redis.Z{Score: float64(now.Add(-time.Second).UnixMilli()), Member: raw})
	tb.c.SAdd(ctx, keys.DefaultPrefix+"nodes", "gone")
	tb.ReclaimOnce(ctx)
	time.Sleep(200 * time.Millisecond) // a few failed attempts
	closed := make(chan struct{})
	go func() { tb.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return while an escalation was retrying")
	}
	if n := tb.c.ZCard(ctx, tb.opts.Keys.Outbox("gone")).Val(); n != 1 {
		t.Errorf("outbox: %d jobs, want the undelivered one kept", n)
	}
	if rec, err := tb.Store().Get(ctx, job.ID); err != nil || rec.Outcome != runbooks.OutcomeExpired {
		t.Errorf("record %+v, %v", rec, err)
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
