package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/redistest"
)

// TestEnqueuerUnderCancellation has requests give up at random points —
// before their batch, while named to send the next one, while their batch
// is in flight — and checks that every other request is still answered,
// each queued job is there once, and the Enqueuer ends idle.
func TestEnqueuerUnderCancellation(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{AOF: true})
	c := rs.Client()
	e := newEnqueuer(c)
	k := Keys{}
	const workers, each = 20, 50
	var mu sync.Mutex
	queued := 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range each {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(3000))*time.Microsecond)
				fp := fmt.Sprintf("%08x%08x", w, i)
				res, err := e.enqueue(ctx, time.Now().Add(5*time.Second), []string{k.Dedup("n1", fp, t0), k.Jobs("n1"), k.Seen("n1")}, "id-"+fp, 60000, `{"id":"x"}`, 0)
				cancel()
				if err == nil {
					if n, _ := res[0].(int64); n != 1 {
						t.Errorf("%s: %v, want a new job", fp, res)
					}
					mu.Lock()
					queued++
					mu.Unlock()
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("requests still waiting after 60s: a batch was never sent")
	}
	// A request that gave up may still have had its job queued; one that
	// was answered must have.
	n := c.XLen(context.Background(), k.Jobs("n1")).Val()
	if int(n) < queued || n > workers*each {
		t.Errorf("%d jobs in the stream, %d answered as queued", n, queued)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		idle := !e.busy && len(e.pending) == 0
		e.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Enqueuer did not become idle")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if queued == 0 {
		t.Error("no request was answered")
	}
}

// enqueue (tests) runs the enqueue script once in the next batch and waits for its
// answer or ctx.
func (e *Enqueuer) enqueue(ctx context.Context, deadline time.Time, keys []string, args ...any) ([]any, error) {
	res, err := e.enqueueAll(ctx, deadline, []Call{{keys: keys, args: args}})
	if err != nil {
		return nil, err
	}
	return res[0].vals, res[0].err
}

// TestEnqueueScriptPerAlertErrors: the alerts of one batch go to Redis in
// one script run, and an alert whose XADD fails gets its own error while
// the others are queued; it leaves no dedup key behind, so a retry is not
// a false duplicate.
func TestEnqueueScriptPerAlertErrors(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	c := rs.Client()
	ctx := context.Background()
	k := Keys{}
	// A key of the wrong type where n3's stream should be.
	if err := c.Set(ctx, k.Jobs("n3"), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	call := func(node, fp string) Call {
		return Call{keys: []string{k.Dedup(node, fp, t0), k.Jobs(node), k.Seen(node)}, args: []any{"id-" + fp, 60000, `{"id":"` + fp + `"}`, 0}}
	}
	e := newEnqueuer(c)
	res, err := e.enqueueAll(ctx, time.Now().Add(5*time.Second), []Call{call("n1", "a"), call("n3", "b"), call("n1", "c"), call("n1", "a")})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{1, -1, 1, 0} {
		r := res[i]
		switch {
		case want == -1:
			if r.err == nil || !strings.Contains(r.err.Error(), "WRONGTYPE") {
				t.Errorf("alert %d: %v %v, want a WRONGTYPE error", i, r.vals, r.err)
			}
		case r.err != nil:
			t.Errorf("alert %d: %v", i, r.err)
		case r.vals[0] != want:
			t.Errorf("alert %d: %v, want %d first", i, r.vals, want)
		}
	}
	if v := res[3].vals[1]; v != "q:id-a" {
		t.Errorf("the duplicate answers %v, want the first job's state q:id-a", v)
	}
	if n := c.XLen(ctx, k.Jobs("n1")).Val(); n != 2 {
		t.Errorf("%d jobs on n1, want 2", n)
	}
	if n := c.Exists(ctx, k.Dedup("n3", "b", t0)).Val(); n != 0 {
		t.Error("the failed alert left a dedup key behind")
	}
}

// TestEnqueuerGroupsBySlotOnCluster: on Redis Cluster a batch becomes one
// script run per hash tag (a script's keys must share a slot), each in
// batch order; on a single Redis, one run for the lot.
func TestEnqueuerGroupsBySlotOnCluster(t *testing.T) {
	k := Keys{}
	call := func(node, fp string) Call {
		return Call{keys: []string{k.Dedup(node, fp, t0), k.Jobs(node), k.Seen(node)}, args: []any{fp, 1, "{}", 0}}
	}
	live := []*enqueueReq{
		{calls: []Call{call("n1", "a"), call("n2", "b")}},
		{calls: []Call{call("n1", "c")}},
	}
	summary := func(gs []scriptGroup) [][]any {
		var out [][]any
		for _, g := range gs {
			var args []any
			for i := 0; i < len(g.args); i += 4 {
				args = append(args, g.args[i])
			}
			out = append(out, args)
		}
		return out
	}
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cl.Close()
	if d := cmp.Diff([][]any{{"a", "c"}, {"b"}}, summary(newEnqueuer(cl).group(live))); d != "" {
		t.Errorf("cluster groups -want +got:\n%s", d)
	}
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer single.Close()
	gs := newEnqueuer(single).group(live)
	if d := cmp.Diff([][]any{{"a", "b", "c"}}, summary(gs)); d != "" {
		t.Errorf("single-Redis groups -want +got:\n%s", d)
	}
	if want := []callAt{{0, 0}, {0, 1}, {1, 0}}; !slices.Equal(want, gs[0].at) {
		t.Errorf("positions %v, want %v", gs[0].at, want)
	}
	if got := hashTag("medic:{node:n1}:jobs"); got != "node:n1" {
		t.Errorf("hashTag = %q", got)
	}
	if got := hashTag("a{}b"); got != "a{}b" {
		t.Errorf("hashTag of an empty tag = %q, want the whole key", got)
	}
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
