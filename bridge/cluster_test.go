package bridge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/runbooks"
)

// TestRedisCluster runs the whole path on a real 3-master Redis Cluster:
// every script's keys share a hash tag, and the run store's cross-slot
// reads and trims go key by key.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	c, err := redisx.New(cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := loadTestConfig(t, testHCL)
	store := NewRunStore(c, StoreOptions{MaxRuns: 15})
	b := New(Options{Client: c, Config: func() *hcl.Config { return cfg }, Store: store})
	mux := http.NewServeMux()
	b.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tb := &testBridge{Bridge: b, srv: srv}

	ec := &episodeCounter{}
	for _, node := range []string{"n1", "n2", "n3"} {
		startConsumer(t, ConsumerOptions{Client: c, Node: node, Runner: ec, Store: store, Block: 200 * time.Millisecond})
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
		runs, _ := store.List(context.Background(), RunFilter{})
		return len(runs) == 15
	})
	runs, err := store.List(context.Background(), RunFilter{Node: "n2", Outcome: runbooks.OutcomeHealthy})
	if err != nil || len(runs) == 0 {
		t.Errorf("List on the cluster: %d runs, %v", len(runs), err)
	}
}
