package jobs_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/medicops/medic/bridge"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// fakeRunner counts runs and answers "recovered" after delay.
type fakeRunner struct {
	mu    sync.Mutex
	runs  map[string]int
	delay time.Duration
	start func(req runbooks.Request)
}

func (f *fakeRunner) Run(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
	started := time.Now()
	if req.Expired != "" {
		// The engine acts on nothing, records expired and escalates.
		return &runbooks.RunRecord{
			ID: req.ID, Runbook: req.Runbook, Agent: req.Agent, Trigger: req.Trigger, Labels: req.Alert.Labels,
			Fingerprint: req.Alert.Fingerprint, StartsAt: req.Alert.StartsAt,
			Steps:   []runbooks.Step{{Name: "escalate", Started: started, OK: true}},
			Outcome: runbooks.OutcomeExpired, Reason: req.Expired, Started: started, Finished: time.Now(),
		}
	}
	if f.start != nil {
		f.start(req)
	}
	f.mu.Lock()
	if f.runs == nil {
		f.runs = map[string]int{}
	}
	f.runs[req.ID]++
	f.mu.Unlock()
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
	}
	return &runbooks.RunRecord{
		ID: req.ID, Runbook: req.Runbook, Agent: req.Agent, Trigger: req.Trigger, Labels: req.Alert.Labels,
		Fingerprint: req.Alert.Fingerprint, StartsAt: req.Alert.StartsAt,
		Steps:   []runbooks.Step{{Name: "restart", Started: started, OK: true}},
		Outcome: runbooks.OutcomeRecovered, Started: started, Finished: time.Now(),
	}
}

func (f *fakeRunner) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.runs {
		out[k] = v
	}
	return out
}

// startConsumer runs a consumer until the test ends.
func startConsumer(t *testing.T, o jobs.ConsumerOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := jobs.NewConsumer(o).Run(ctx); err != nil {
			t.Errorf("consumer: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pendingCount(t *testing.T, c redis.UniversalClient, node string) int64 {
	t.Helper()
	p, err := c.XPending(context.Background(), jobs.Keys{}.Jobs(node), jobs.DefaultGroup).Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			return 0
		}
		t.Fatal(err)
	}
	return p.Count
}

func TestConsumerOutcomes(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken

	// Queued before the node is up: one to run, one to cancel, and (from
	// a bridge with a 1ms deadline) one that expires.
	tb.post(t, bearer, payload("firing", firing("a1", "0001", t0), firing("a1", "0002", t0)))
	res := firing("a1", "0002", t0)
	res.Status = "resolved"
	tb.post(t, bearer, payload("resolved", res))
	late := bridge.New(bridge.Options{Client: tb.c, Config: tb.opts.Config, JobDeadline: time.Millisecond})
	if _, err := late.Ingest(ctx, decodeOne(t, firing("a1", "0003", t0))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)

	fr := &fakeRunner{}
	startConsumer(t, jobs.ConsumerOptions{Client: tb.c, Node: "n1", Runner: fr, Store: tb.Store()})
	waitFor(t, "all three jobs handled", 10*time.Second, func() bool {
		return tb.c.XLen(ctx, jobs.Keys{}.Jobs("n1")).Val() == 0
	})
	byFP := map[string]string{}
	runs, _ := tb.Store().List(ctx, jobs.RunFilter{Node: "n1"})
	for _, r := range runs {
		byFP[r.Fingerprint] = r.Outcome
	}
	want := map[string]string{"0001": runbooks.OutcomeRecovered, "0002": runbooks.OutcomeCancelled, "0003": runbooks.OutcomeExpired}
	for fp, o := range want {
		if byFP[fp] != o {
			t.Errorf("fingerprint %s: outcome %q, want %q", fp, byFP[fp], o)
		}
	}
	if len(runs) != 3 {
		t.Errorf("%d records, want 3", len(runs))
	}
	if n := len(fr.counts()); n != 1 {
		t.Errorf("runner ran %d jobs, want only the live one", n)
	}
	if n := pendingCount(t, tb.c, "n1"); n != 0 {
		t.Errorf("%d jobs still pending", n)
	}
	// Later jobs start at once: BLOCK, not polling.
	start := time.Now()
	tb.post(t, bearer, payload("firing", firing("a1", "0004", t0)))
	waitFor(t, "a new job to run", 5*time.Second, func() bool { return len(fr.counts()) == 2 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("a new job took %v to start", d)
	}
}

func TestConsumerRecovery(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	stream := jobs.Keys{}.Jobs("n1")
	tb.post(t, bearer, payload("firing", firing("a1", "00a1", t0), firing("a1", "00a2", t0), firing("a1", "00a3", t0)))
	queued := readJobs(t, tb.c, "n1")

	// A previous life of this node read all three, finished the second
	// (record stored) and died before acknowledging any.
	if err := tb.c.XGroupCreateMkStream(ctx, stream, jobs.DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	tb.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: jobs.DefaultGroup, Consumer: "n1", Streams: []string{stream, ">"}, Count: 2})
	for _, j := range queued[:2] {
		tb.c.Set(ctx, jobs.Keys{}.Dedup("n1", j.Alert.Fingerprint, j.Alert.StartsAt), "r:"+j.ID, time.Hour)
	}
	if err := tb.Store().Save(ctx, &runbooks.RunRecord{ID: queued[1].ID, Outcome: runbooks.OutcomeRecovered, Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	// ... and the third was taken by a consumer under another name that
	// is gone: it is claimed once idle for ClaimIdle.
	tb.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: jobs.DefaultGroup, Consumer: "n1-old", Streams: []string{stream, ">"}, Count: 1})

	fr := &fakeRunner{}
	startConsumer(t, jobs.ConsumerOptions{Client: tb.c, Node: "n1", Runner: fr, Store: tb.Store(), ClaimIdle: 200 * time.Millisecond})
	waitFor(t, "the stream to drain", 10*time.Second, func() bool { return tb.c.XLen(ctx, stream).Val() == 0 })
	got := fr.counts()
	if got[queued[0].ID] != 1 || got[queued[1].ID] != 0 || got[queued[2].ID] != 1 {
		t.Errorf("runs per job = %v; want the unfinished one and the claimed one once, the stored one not again", got)
	}
	if n := pendingCount(t, tb.c, "n1"); n != 0 {
		t.Errorf("%d jobs still pending", n)
	}
	for _, j := range queued {
		if v := tb.c.Get(ctx, jobs.Keys{}.Dedup("n1", j.Alert.Fingerprint, j.Alert.StartsAt)).Val(); v != "d:"+j.ID {
			t.Errorf("job %s state %q, want done", j.ID, v)
		}
	}
}

// TestMain doubles as the node process of TestConsumerKilledMidJob.
func TestMain(m *testing.M) {
	if os.Getenv("MEDIC_BRIDGE_TEST_CONSUMER") != "" {
		os.Exit(consumerProcess())
	}
	goleak.VerifyTestMain(m)
}

// consumerProcess is a node: it consumes n1's jobs with a runner that logs
// "start ID" and "end ID" to a file around a delay.
func consumerProcess() int {
	c, err := redisx.New(os.Getenv("MEDIC_REDIS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	delay, _ := time.ParseDuration(os.Getenv("MEDIC_RUN_DELAY"))
	logf, err := os.OpenFile(os.Getenv("MEDIC_RUN_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := &fakeRunner{delay: delay, start: func(req runbooks.Request) { fmt.Fprintf(logf, "start %s\n", req.ID) }}
	ended := runnerFunc(func(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
		rec := r.Run(ctx, req)
		fmt.Fprintf(logf, "end %s\n", req.ID)
		return rec
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	_ = jobs.NewConsumer(jobs.ConsumerOptions{Client: c, Node: "n1", Runner: ended, Store: jobs.NewRunStore(c, jobs.StoreOptions{})}).Run(ctx)
	return 0
}

type runnerFunc func(context.Context, runbooks.Request) *runbooks.RunRecord

func (f runnerFunc) Run(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
	return f(ctx, req)
}

func TestConsumerKilledMidJob(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	logPath := filepath.Join(t.TempDir(), "runs.log")
	node := func(delay string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "MEDIC_BRIDGE_TEST_CONSUMER=1", "MEDIC_REDIS_URL="+tb.redis.URL(),
			"MEDIC_RUN_DELAY="+delay, "MEDIC_RUN_LOG="+logPath)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = procsig.ChildAttr()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	lines := func() []string {
		f, err := os.Open(logPath)
		if err != nil {
			return nil
		}
		defer f.Close()
		var out []string
		for s := bufio.NewScanner(f); s.Scan(); {
			out = append(out, s.Text())
		}
		return out
	}

	first := node("1h")
	tb.post(t, "Bearer "+testToken, payload("firing", firing("a1", "0bad", t0)))
	waitFor(t, "the job to start", 10*time.Second, func() bool { return len(lines()) == 1 })
	if err := procsig.Cmd(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	id := strings.TrimPrefix(lines()[0], "start ")

	second := node("100ms")
	defer func() { _ = procsig.Cmd(second, syscall.SIGKILL); second.Wait() }()
	waitFor(t, "the job to be run to the end", 10*time.Second, func() bool {
		r, err := tb.Store().Get(ctx, id)
		return err == nil && r.Outcome == runbooks.OutcomeRecovered && pendingCount(t, tb.c, "n1") == 0
	})
	time.Sleep(300 * time.Millisecond) // a second run would show up here
	want := []string{"start " + id, "start " + id, "end " + id}
	if got := lines(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("run log %q, want %q (killed once, then run to the end once)", got, want)
	}
	if runs, _ := tb.Store().List(ctx, jobs.RunFilter{}); len(runs) != 1 {
		t.Errorf("%d records, want 1", len(runs))
	}
	if n := tb.c.XLen(ctx, jobs.Keys{}.Jobs("n1")).Val(); n != 0 {
		t.Errorf("stream length %d, want 0", n)
	}
}
