package controls

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/redistest"
)

// Every script touches keys of one hash tag only: on Redis Cluster a
// script over two slots fails with CROSSSLOT, so this exercises each of
// them once there.
func TestOnRedisCluster(t *testing.T) {
	ctx := context.Background()
	cl := redistest.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { client.Close() })
	s := New(client, "")
	now := time.Now()

	if err := s.Pause(ctx, Pause{Runbook: "rb", Since: now, Until: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Paused(ctx, "rb", now.Add(2*time.Second)); err != nil || p != nil {
		t.Fatalf("expired pause: %+v %v", p, err)
	}
	if err := s.Request(ctx, "r1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Decide(ctx, Decision{RunID: "r1", Approve: true, At: now}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Withdraw(ctx, "r1"); err != nil || d == nil || !d.Approve {
		t.Fatalf("withdraw: %+v %v", d, err)
	}
	if _, ex, err := s.TakeRestart(ctx, "n", "a", 1, time.Hour, Backoff{Base: time.Second, Max: time.Minute, Reset: time.Hour}, now, "r"); err != nil || ex != "" {
		t.Fatalf("take: %q %v", ex, err)
	}
	if open, _, err := s.Circuit(ctx, "n", "a", 1, time.Hour, now, "r"); err != nil || open {
		t.Fatalf("circuit: %v %v", open, err)
	}
	if err := s.ResetAgent(ctx, "n", "a"); err != nil {
		t.Fatal(err)
	}
	slot, err := s.Acquire(ctx, Limit{Runbook: "rb", Key: "eu1", Max: 1, Wait: time.Second, Queue: 1, LeaseTTL: time.Second}, "r1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot.Release()
}
