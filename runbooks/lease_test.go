package runbooks

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
)

func TestRedisLocker(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	client := srv.Client()
	ctx := context.Background()
	a := NewRedisLocker(client, "")
	b := NewRedisLocker(client, "")
	key := LeaseKey("web-01", "ops")

	releaseA, ok, err := a.TryLock(ctx, key, time.Second)
	if err != nil || !ok {
		t.Fatalf("first TryLock: ok=%v err=%v", ok, err)
	}
	if ttl := client.PTTL(ctx, "medic:lease:web-01:ops").Val(); ttl <= 0 {
		t.Fatalf("lease key medic:lease:web-01:ops has ttl %s", ttl)
	}
	if _, ok, _ := b.TryLock(ctx, key, time.Second); ok {
		t.Fatal("second holder got a held lease")
	}
	// Renewal keeps it past two TTLs while the holder runs.
	time.Sleep(2200 * time.Millisecond)
	if _, ok, _ := b.TryLock(ctx, key, time.Second); ok {
		t.Fatal("lease expired while its holder was running")
	}
	releaseA()
	releaseA() // idempotent
	if n := client.Exists(ctx, "medic:lease:web-01:ops").Val(); n != 0 {
		t.Fatal("release left the key")
	}
	releaseB, ok, _ := b.TryLock(ctx, key, time.Second)
	if !ok {
		t.Fatal("lease not free after release")
	}
	defer releaseB()

	// A stale holder cannot release a successor's lease: fake A's token
	// expiring by deleting and re-taking under B.
	if err := client.Set(ctx, "medic:lease:other", "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := releaseScript.Run(ctx, client, []string{"medic:lease:other"}, "my-token").Int()
	if err != nil || n != 0 {
		t.Fatalf("compare-and-delete deleted another holder's lease: n=%d err=%v", n, err)
	}
	if client.Get(ctx, "medic:lease:other").Val() != "someone-else" {
		t.Fatal("other holder's lease gone")
	}
}

func TestRedisLockerExpiresWhenHolderDies(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	client := srv.Client()
	ctx := context.Background()
	l := NewRedisLocker(client, "test:")
	// Take the key the way a crashed holder leaves it: set, never renewed.
	if err := client.Set(ctx, "test:lease:n:a", "dead-holder", 200*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.TryLock(ctx, "lease:n:a", time.Second); ok {
		t.Fatal("took a lease a holder still has")
	}
	time.Sleep(300 * time.Millisecond)
	release, ok, err := l.TryLock(ctx, "lease:n:a", time.Second)
	if err != nil || !ok {
		t.Fatalf("lease of a dead holder did not expire: %v", err)
	}
	release()
}

// Two engines (two processes' worth: separate lockers, budgets and
// registries) race for the same agent; exactly one runs the lifecycle.
func TestTwoEnginesRaceForOneAgent(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := loadConfig(t, `
agent "ops" {
  pidfile = "/nonexistent/ops.pid"
  start   = ["true"]
  stop    = ["true"]
}
runbook "r" {
  match { alertname = "MedicAgentDown" }
}
`)
	agents := &slowAgents{delay: 300 * time.Millisecond}
	var engines []*Engine
	for range 2 {
		engines = append(engines, New(Options{
			Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: agents,
			Locker: NewRedisLocker(srv.Client(), ""), LeaseTTL: 2 * time.Second, BackoffBase: -1,
		}))
	}
	for round := range 3 {
		agents.mu.Lock()
		agents.alive = false
		agents.mu.Unlock()
		var wg sync.WaitGroup
		recs := make([]*RunRecord, 2)
		for i, e := range engines {
			wg.Go(func() {
				recs[i] = e.Run(context.Background(), Request{Alert: alertFor("ops", "MedicAgentDown")})
			})
		}
		wg.Wait()
		outcomes := map[string]int{}
		for _, r := range recs {
			outcomes[r.Outcome]++
		}
		if outcomes[OutcomeRecovered] != 1 || outcomes[OutcomeSkipped] != 1 {
			t.Fatalf("round %d: outcomes %v (%q / %q)", round, outcomes, recs[0].Reason, recs[1].Reason)
		}
		if agents.maxConcurrent.Load() != 1 {
			t.Fatalf("round %d: %d runs touched the agent at once", round, agents.maxConcurrent.Load())
		}
	}
	if got := agents.restarts.Load(); got != 3 {
		t.Errorf("%d restarts over 3 rounds, want 3", got)
	}
}

// slowAgents is dead until restarted, takes delay per restart and counts
// overlapping calls.
type slowAgents struct {
	delay         time.Duration
	mu            sync.Mutex
	alive         bool
	inFlight      atomic.Int32
	maxConcurrent atomic.Int32
	restarts      atomic.Int32
}

func (s *slowAgents) enter() func() {
	n := s.inFlight.Add(1)
	for {
		m := s.maxConcurrent.Load()
		if n <= m || s.maxConcurrent.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { s.inFlight.Add(-1) }
}

func (s *slowAgents) Alive(context.Context, string) (bool, string, error) {
	defer s.enter()()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alive, "", nil
}

func (s *slowAgents) Probe(context.Context, string) (bool, string, error) {
	defer s.enter()()
	return true, "", nil
}

func (s *slowAgents) Usage(context.Context, string) (hcl.Usage, error) { return hcl.Usage{}, nil }

func (s *slowAgents) Restart(context.Context, string) error {
	defer s.enter()()
	time.Sleep(s.delay)
	s.restarts.Add(1)
	s.mu.Lock()
	s.alive = true
	s.mu.Unlock()
	return nil
}

func TestRedisLockerOnCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	defer client.Close()
	ctx := context.Background()
	a, b := NewRedisLocker(client, ""), NewRedisLocker(client, "")
	for _, agent := range []string{"a1", "a2", "a3", "a4"} {
		key := LeaseKey("n1", agent)
		release, ok, err := a.TryLock(ctx, key, time.Second)
		if err != nil || !ok {
			t.Fatalf("%s: ok=%v err=%v", key, ok, err)
		}
		if _, ok, _ := b.TryLock(ctx, key, time.Second); ok {
			t.Fatalf("%s taken twice", key)
		}
		release()
		releaseB, ok, _ := b.TryLock(ctx, key, time.Second)
		if !ok {
			t.Fatalf("%s not free after release", key)
		}
		releaseB()
	}
}
