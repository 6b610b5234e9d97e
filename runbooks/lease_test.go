package runbooks

import (
	"context"
	"strings"
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

// The lease names its holder (run/incarnation), and a holder that is
// provably gone is taken over at once, against a real redis-server.
func TestLeaseTakeover(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	client := srv.Client()
	ctx := context.Background()
	key := LeaseKey("n1", "ops")
	full := "medic:" + key
	old := NewRedisLocker(client, "").WithIncarnation("n1", "inc-old")
	if err := old.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	// The old incarnation takes the lease for run-1 and dies (never
	// releases: no renewals either, the TTL is a minute).
	first, err := old.Acquire(ctx, key, LeaseHolder{Run: "run-1", Incarnation: "inc-old"}, time.Minute, nil)
	if err != nil || first.Release == nil {
		t.Fatalf("first acquire: %+v %v", first, err)
	}
	// Its renewals stop at the end (a dead holder renews nothing; the
	// release finds another value and deletes nothing).
	defer first.Release()
	if v := client.Get(ctx, full).Val(); v != "run-1/inc-old" {
		t.Fatalf("lease value %q, want run-1/inc-old", v)
	}
	// Before the node restarts, another run of the old incarnation's
	// node that is live is refused, naming the holder.
	l, err := old.Acquire(ctx, key, LeaseHolder{Run: "run-2", Incarnation: "inc-old"}, time.Minute, func(string) bool { return true })
	if err != nil || l.Release != nil || l.Holder.Run != "run-1" {
		t.Fatalf("live holder: got %+v %v, want refused naming run-1", l, err)
	}

	// The node restarts: a new incarnation, published.
	nu := NewRedisLocker(client, "").WithIncarnation("n1", "inc-new")
	if err := nu.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if v := client.Get(ctx, IncarnationKey("medic:", "n1")).Val(); v != "inc-new" {
		t.Fatalf("published incarnation %q", v)
	}
	// run-1 redelivered: takes over its own predecessor's lease.
	l, err = nu.Acquire(ctx, key, LeaseHolder{Run: "run-1", Incarnation: "inc-new"}, time.Minute, func(string) bool { return false })
	if err != nil || l.Release == nil || l.How != LeasePredecessor {
		t.Fatalf("redelivered run: %+v %v, want taken over from its predecessor", l, err)
	}
	l.Release()

	// Another run of the old incarnation holds it: the process is gone.
	if err := client.Set(ctx, full, "run-9/inc-old", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	l, err = nu.Acquire(ctx, key, LeaseHolder{Run: "run-3", Incarnation: "inc-new"}, time.Minute, func(string) bool { return true })
	if err != nil || l.Release == nil || l.How != LeaseRestarted || l.Holder.Run != "run-9" {
		t.Fatalf("earlier incarnation's lease: %+v %v, want taken over", l, err)
	}
	l.Release()

	// A run of this incarnation that has ended (its release was lost)
	// holds it: taken over; one that is still running: refused.
	if err := client.Set(ctx, full, "run-4/inc-new", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	l, err = nu.Acquire(ctx, key, LeaseHolder{Run: "run-5", Incarnation: "inc-new"}, time.Minute, func(id string) bool { return id == "run-4" })
	if err != nil || l.Release != nil || l.Holder.Run != "run-4" {
		t.Fatalf("live holder of this incarnation: %+v %v, want refused", l, err)
	}
	l, err = nu.Acquire(ctx, key, LeaseHolder{Run: "run-5", Incarnation: "inc-new"}, time.Minute, func(string) bool { return false })
	if err != nil || l.Release == nil || l.How != LeaseOrphaned {
		t.Fatalf("orphaned lease: %+v %v, want taken over", l, err)
	}
	l.Release()
	if n := client.Exists(ctx, full).Val(); n != 0 {
		t.Fatal("release left the key")
	}

	// go-redis retrying after a lost reply finds its own value: acquired.
	if err := client.Set(ctx, full, "run-6/inc-new", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	l, err = nu.Acquire(ctx, key, LeaseHolder{Run: "run-6", Incarnation: "inc-new"}, time.Minute, func(string) bool { return true })
	if err != nil || l.Release == nil || l.How != LeaseOwn {
		t.Fatalf("own value: %+v %v, want acquired", l, err)
	}
	l.Release()

	// The same run held by the node's current incarnation (a second live
	// process under the node's name claimed the job) is not taken over.
	if err := client.Set(ctx, full, "run-8/inc-new", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	other := NewRedisLocker(client, "").WithIncarnation("n1", "inc-other")
	other.published = true // started before inc-new, which published last
	if l, _ := other.Acquire(ctx, key, LeaseHolder{Run: "run-8", Incarnation: "inc-other"}, time.Minute, nil); l.Release != nil {
		t.Fatal("took over the same run from the node's live current incarnation")
	}

	// A token of an older medic (no run, no incarnation) is waited out.
	if err := client.Set(ctx, full, "0123abcd", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if l, _ := nu.Acquire(ctx, key, LeaseHolder{Run: "run-7", Incarnation: "inc-new"}, time.Minute, func(string) bool { return false }); l.Release != nil {
		t.Fatal("took over an older medic's lease")
	}
}

// A release that fails because Redis is down is retried once Redis is
// back (AOF keeps the key): the agent is not held for the rest of the TTL.
func TestLeaseReleaseRetriedAfterRedisRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AOF: true})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer client.Close()
	ctx := context.Background()
	l := NewRedisLocker(client, "").WithIncarnation("n1", "inc-1")
	lease, err := l.Acquire(ctx, LeaseKey("n1", "ops"), LeaseHolder{Run: "run-1", Incarnation: "inc-1"}, time.Minute, nil)
	if err != nil || lease.Release == nil {
		t.Fatalf("acquire: %+v %v", lease, err)
	}
	srv.Kill()
	lease.Release() // fails: Redis is down
	srv.Restart()
	check := srv.Client()
	deadline := time.Now().Add(20 * time.Second)
	for check.Exists(ctx, "medic:lease:n1:ops").Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lease still held %s after Redis came back (ttl %s)", 20*time.Second, check.PTTL(ctx, "medic:lease:n1:ops").Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Case 1 of issue 14 at the engine: a job redelivered after its node
// restarted takes over its dead predecessor's lease and runs, and says
// so; an episode whose agent a live run holds is skipped naming it.
func TestRedeliveredRunTakesOverItsLease(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	client := srv.Client()
	ctx := context.Background()
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
	dead := NewRedisLocker(client, "").WithIncarnation("web-01", "inc-dead")
	gone, err := dead.Acquire(ctx, LeaseKey("web-01", "ops"), LeaseHolder{Run: "job-1", Incarnation: "inc-dead"}, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Release()
	engine := func(inc string) *Engine {
		return New(Options{
			Config: func() *hcl.Config { return cfg }, Node: "web-01", Agents: &slowAgents{}, Incarnation: inc,
			Locker: NewRedisLocker(client, "").WithIncarnation("web-01", inc), LeaseTTL: time.Minute, BackoffBase: -1,
		})
	}
	// Without incarnations (medic before this change) the redelivered
	// job was skipped by its own predecessor.
	e := engine("inc-new")
	rec := e.Run(ctx, Request{ID: "job-1", Redelivered: true, Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeRecovered || rec.Redelivered != RedeliveredStartedAgain {
		t.Fatalf("redelivered job: %s %q redelivered=%q, want recovered, started_again", rec.Outcome, rec.Reason, rec.Redelivered)
	}
	if s := rec.Steps[0]; s.Name != "lease" || !s.OK || !strings.Contains(s.Detail, "previous attempt") {
		t.Errorf("lease step %+v, want the takeover recorded", s)
	}
	if client.Exists(ctx, "medic:lease:web-01:ops").Val() != 0 {
		t.Error("lease left behind")
	}
	// A live holder (another engine of the same incarnation's node: a
	// second process sharing the name would be a misconfiguration, so
	// hold it here directly) is named.
	if _, err := client.Set(ctx, "medic:lease:web-01:ops", "job-2/inc-new", time.Minute).Result(); err != nil {
		t.Fatal(err)
	}
	e.setLive("job-2", true)
	rec = e.Run(ctx, Request{ID: "job-3", Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome != OutcomeSkipped || rec.HeldBy != "job-2" || !strings.Contains(rec.Reason, "job-2") {
		t.Fatalf("held by a live run: %s %q held_by=%q", rec.Outcome, rec.Reason, rec.HeldBy)
	}
	e.setLive("job-2", false)
	rec = e.Run(ctx, Request{ID: "job-3", Alert: alertFor("ops", "MedicAgentDown")})
	if rec.Outcome == OutcomeSkipped {
		t.Fatalf("lease of an ended run of this process still skips: %q", rec.Reason)
	}
}
