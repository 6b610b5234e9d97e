package bridge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
)

// TestWebhookManyAlertsOneNotification: the jobs of a notification's
// firing alerts go to Redis together, in order, and a resolved alert
// after its firing one in the same notification sees the job it cancels.
func TestWebhookManyAlertsOneNotification(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	bearer := "Bearer " + testToken
	var alerts []alertJSON
	for i := range 300 {
		alerts = append(alerts, firing("a1", fmt.Sprintf("%016x", i+1), t0))
	}
	gone := firing("a1", fmt.Sprintf("%016x", 7), t0)
	gone.Status = "resolved"
	alerts = append(alerts, gone, firing("a2", "00000000000000ff", t0))
	code, body := tb.post(t, bearer, payload("firing", alerts...))
	if code != 202 {
		t.Fatalf("code %d: %v", code, body)
	}
	if d := cmp.Diff(counts(302, 0, 0), body); d != "" {
		t.Errorf("counts -want +got:\n%s", d)
	}
	queued := readJobs(t, tb.c, "n1")
	if len(queued) != 300 {
		t.Fatalf("%d jobs on n1, want 300", len(queued))
	}
	for i, j := range queued {
		if want := fmt.Sprintf("%016x", i+1); j.Alert.Fingerprint != want {
			t.Fatalf("job %d is %s, want %s: out of order", i, j.Alert.Fingerprint, want)
		}
	}
	if v := tb.c.Get(context.Background(), jobs.Keys{}.Dedup("n1", fmt.Sprintf("%016x", 7), t0)).Val(); v != "c:"+queued[6].ID {
		t.Errorf("the resolved alert's episode is %q, want c:%s", v, queued[6].ID)
	}
	if n := len(readJobs(t, tb.c, "n2")); n != 1 {
		t.Errorf("%d jobs on n2, want 1", n)
	}
	// Alertmanager's retry of the same notification: all duplicates.
	code, body = tb.post(t, bearer, payload("firing", alerts...))
	if d := cmp.Diff(counts(1, 301, 0), body); code != 202 || d != "" {
		t.Errorf("retry: code %d, counts -want +got:\n%s", code, d)
	}
}

// TestEnqueueBatchMetric: the bridge reports how many alerts each batch
// to Redis carried.
func TestEnqueueBatchMetric(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, nil)
	e := jobs.NewEnqueuer(rs.Client(), m.enqueueBatch)
	var calls []jobs.Call
	for i := range 3 {
		job := jobs.Job{ID: fmt.Sprint(i), Node: "n1", Alert: alert.Alert{Fingerprint: fmt.Sprintf("%016x", i), StartsAt: t0}}
		calls = append(calls, jobs.EnqueueCall(jobs.Keys{}, &job, []byte("{}"), time.Minute, 0))
	}
	if _, err := e.Enqueue(context.Background(), time.Now().Add(5*time.Second), calls); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(m.enqueueBatch, strings.NewReader(`
# HELP medic_bridge_enqueue_batch_alerts Firing alerts per group-commit batch the bridge sent to Redis (one round trip, one fsync with appendfsync always).
# TYPE medic_bridge_enqueue_batch_alerts histogram
medic_bridge_enqueue_batch_alerts_bucket{le="1"} 0
medic_bridge_enqueue_batch_alerts_bucket{le="2"} 0
medic_bridge_enqueue_batch_alerts_bucket{le="4"} 1
medic_bridge_enqueue_batch_alerts_bucket{le="8"} 1
medic_bridge_enqueue_batch_alerts_bucket{le="16"} 1
medic_bridge_enqueue_batch_alerts_bucket{le="32"} 1
medic_bridge_enqueue_batch_alerts_bucket{le="64"} 1
medic_bridge_enqueue_batch_alerts_bucket{le="128"} 1
medic_bridge_enqueue_batch_alerts_bucket{le="+Inf"} 1
medic_bridge_enqueue_batch_alerts_sum 3
medic_bridge_enqueue_batch_alerts_count 1
`)); err != nil {
		t.Error(err)
	}
}
