package bridge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// clusterClient starts a real 3-master Redis Cluster and returns medic's
// client for it, closed when the test ends.
func clusterClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	c, err := redisx.New(redistest.StartCluster(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisCluster runs the whole path on a real 3-master Redis Cluster:
// every script's keys share a hash tag, and the run store's cross-slot
// reads and trims go key by key.
func TestRedisCluster(t *testing.T) {
	c := clusterClient(t)
	cfg := loadTestConfig(t, testHCL)
	store := jobs.NewRunStore(c, jobs.StoreOptions{MaxRuns: 15})
	b := New(Options{Client: c, Config: func() *hcl.Config { return cfg }, Store: store})
	mux := http.NewServeMux()
	b.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tb := &testBridge{Bridge: b, srv: srv}

	ec := &episodeCounter{}
	for _, node := range []string{"n1", "n2", "n3"} {
		startConsumer(t, jobs.ConsumerOptions{Client: c, Node: node, Runner: ec, Store: store, Block: 200 * time.Millisecond})
	}
	var alerts []alertJSON
	for i := range 20 {
		a := firing("a1", fmt.Sprintf("%04x", i), t0)
		a.Labels["node"] = fmt.Sprintf("n%d", i%3+1)
		alerts = append(alerts, a)
	}
	if code, body := tb.post(t, "", payload("firing", alerts...)); code != 202 || fmt.Sprint(body["accepted"]) != "20" {
		t.Fatalf("webhook: %d %v", code, body)
	}
	if code, body := tb.post(t, "", payload("firing", alerts...)); code != 202 || fmt.Sprint(body["duplicates"]) != "20" {
		t.Fatalf("repeat: %d %v", code, body)
	}
	checkOnce(t, ec, 20, 20*time.Second)
	waitFor(t, "records stored", 5*time.Second, func() bool {
		runs, _ := store.List(context.Background(), jobs.RunFilter{})
		return len(runs) == 15
	})
	runs, err := store.List(context.Background(), jobs.RunFilter{Node: "n2", Outcome: runbooks.OutcomeHealthy})
	if err != nil || len(runs) == 0 {
		t.Errorf("List on the cluster: %d runs, %v", len(runs), err)
	}
}

// TestEnqueueBatchOnCluster: one batch carrying alerts for several nodes
// becomes one script run per node's hash tag on a real Redis Cluster (a
// single run across slots would fail with CROSSSLOT), and every alert is
// queued on its own node's stream.
func TestEnqueueBatchOnCluster(t *testing.T) {
	c := clusterClient(t)
	k := jobs.Keys{}
	var calls []jobs.Call
	for i := range 12 {
		node, fp := fmt.Sprintf("n%d", i%6), fmt.Sprintf("%016x", i)
		job := jobs.Job{ID: "id-" + fp, Node: node, Alert: alert.Alert{Fingerprint: fp, StartsAt: t0}}
		calls = append(calls, jobs.EnqueueCall(k, &job, []byte(`{}`), time.Minute, 0))
	}
	res, err := jobs.NewEnqueuer(c, nil).Enqueue(context.Background(), time.Now().Add(5*time.Second), calls)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.State != jobs.Queued {
			t.Fatalf("alert %d: %+v, want queued", i, r)
		}
	}
	for i := range 6 {
		if n := c.XLen(context.Background(), k.Jobs(fmt.Sprintf("n%d", i))).Val(); n != 2 {
			t.Errorf("node n%d has %d jobs, want 2", i, n)
		}
	}
}
