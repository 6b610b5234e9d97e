package jobs_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// Waiting is not working: with one execution slot, a run parked waiting
// (for an approval, a concurrency slot) gives the slot back, so another
// alert's job runs meanwhile; the parked run takes a slot again when its
// wait ends and finishes.
func TestConsumerParkedRunFreesItsSlot(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	decided := make(chan struct{})
	var parkedID atomic.Value
	var working, maxWorking atomic.Int32
	runner := runnerFunc(func(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
		work := func(d time.Duration) {
			n := working.Add(1)
			for m := maxWorking.Load(); n > m && !maxWorking.CompareAndSwap(m, n); m = maxWorking.Load() {
			}
			time.Sleep(d)
			working.Add(-1)
		}
		rec := &runbooks.RunRecord{ID: req.ID, Agent: req.Agent, Fingerprint: req.Alert.Fingerprint, StartsAt: req.Alert.StartsAt, Steps: []runbooks.Step{}}
		if req.Alert.Fingerprint == "0a01" {
			parkedID.Store(req.ID)
			work(10 * time.Millisecond)
			unpark := req.Park()
			select {
			case <-decided:
			case <-ctx.Done():
			}
			unpark()
			work(10 * time.Millisecond)
		} else {
			work(10 * time.Millisecond)
		}
		rec.Outcome = runbooks.OutcomeRecovered
		return rec
	})
	startConsumer(t, jobs.ConsumerOptions{Client: tb.c, Node: "n1", Runner: runner, Store: tb.Store(), Concurrency: 1})
	tb.post(t, bearer, payload("firing", firing("a1", "0a01", t0)))
	waitFor(t, "the approval run to park", 10*time.Second, func() bool { return parkedID.Load() != nil })
	tb.post(t, bearer, payload("firing", firing("a1", "0a02", t0)))
	waitFor(t, "the other alert's run to finish while the first is parked", 10*time.Second, func() bool {
		runs, _ := tb.Store().List(ctx, jobs.RunFilter{Node: "n1"})
		for _, r := range runs {
			if r.Fingerprint == "0a02" && r.Outcome == runbooks.OutcomeRecovered {
				return true
			}
		}
		return false
	})
	close(decided)
	waitFor(t, "the parked run to finish", 10*time.Second, func() bool {
		r, err := tb.Store().Get(ctx, parkedID.Load().(string))
		return err == nil && r.Outcome == runbooks.OutcomeRecovered
	})
	if m := maxWorking.Load(); m != 1 {
		t.Errorf("%d runs worked at once with --node.jobs=1", m)
	}
}

// An episode skipped because a live run of another episode holds its
// agent is not acknowledged as handled: its record names the holder, and
// it runs again once the holder is done.
func TestConsumerRetriesSkippedEpisode(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	var mu sync.Mutex
	attempts := 0
	runner := runnerFunc(func(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
		mu.Lock()
		attempts++
		n := attempts
		mu.Unlock()
		rec := &runbooks.RunRecord{ID: req.ID, Agent: req.Agent, Fingerprint: req.Alert.Fingerprint, StartsAt: req.Alert.StartsAt, Steps: []runbooks.Step{}}
		if n == 1 {
			rec.Outcome, rec.HeldBy, rec.Reason = runbooks.OutcomeSkipped, "run-holder", "run run-holder holds the lease of agent a1 on node n1 and is still running"
			return rec
		}
		rec.Outcome, rec.Reason = runbooks.OutcomeHealthy, "alive and its probe passes"
		return rec
	})
	startConsumer(t, jobs.ConsumerOptions{Client: tb.c, Node: "n1", Runner: runner, Store: tb.Store()})
	tb.post(t, bearer, payload("firing", firing("a1", "0b01", t0)))
	var sawSkipped atomic.Bool
	waitFor(t, "the skipped episode to run again and end healthy", 15*time.Second, func() bool {
		runs, _ := tb.Store().List(ctx, jobs.RunFilter{Node: "n1"})
		for _, r := range runs {
			if r.Fingerprint != "0b01" {
				continue
			}
			if r.Outcome == runbooks.OutcomeSkipped && r.HeldBy == "run-holder" {
				sawSkipped.Store(true)
			}
			if r.Outcome == runbooks.OutcomeHealthy {
				return true
			}
		}
		return false
	})
	if !sawSkipped.Load() {
		t.Log("the intermediate skipped record was replaced before it was seen (fine)")
	}
	waitFor(t, "the job to be acknowledged", 5*time.Second, func() bool { return tb.c.XLen(ctx, jobs.Keys{}.Jobs("n1")).Val() == 0 })
	if attempts < 2 {
		t.Errorf("%d attempts, want the skipped episode tried again", attempts)
	}
}

// A job its node read and never finished is run again with
// Request.Redelivered, so the record says it started again.
func TestConsumerMarksRedeliveredJobs(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	stream := jobs.Keys{}.Jobs("n1")
	tb.post(t, bearer, payload("firing", firing("a1", "0c01", t0)))
	queued := readJobs(t, tb.c, "n1")
	if err := tb.c.XGroupCreateMkStream(ctx, stream, jobs.DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// A previous life of the node read it and marked it running.
	tb.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: jobs.DefaultGroup, Consumer: "n1", Streams: []string{stream, ">"}, Count: 1})
	tb.c.Set(ctx, jobs.Keys{}.Dedup("n1", queued[0].Alert.Fingerprint, queued[0].Alert.StartsAt), "r:"+queued[0].ID, time.Hour)
	var got atomic.Bool
	runner := runnerFunc(func(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
		got.Store(req.Redelivered)
		return &runbooks.RunRecord{ID: req.ID, Outcome: runbooks.OutcomeHealthy, Steps: []runbooks.Step{}}
	})
	startConsumer(t, jobs.ConsumerOptions{Client: tb.c, Node: "n1", Runner: runner, Store: tb.Store()})
	waitFor(t, "the stream to drain", 10*time.Second, func() bool { return tb.c.XLen(ctx, stream).Val() == 0 })
	if !got.Load() {
		t.Error("the redelivered job was not marked Redelivered")
	}
}
