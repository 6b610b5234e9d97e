package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medicops/medic/jobs"
)

// TestRedisRestartLosesNothing sends alerts one by one the way
// Alertmanager does (retrying until a 2xx) while Redis is SIGKILLed and
// restarted from its AOF: every accepted alert runs, exactly once.
func TestRedisRestartLosesNothing(t *testing.T) {
	// Give up on Redis after 1s so that the 3s outage answers 503s.
	tb := startTestBridge(t, testHCL, func(o *Options) { o.RequestTimeout = time.Second })
	ec := &episodeCounter{}
	startConsumer(t, jobs.ConsumerOptions{Client: tb.c, Node: "n1", Runner: ec, Store: tb.Store(), Block: 200 * time.Millisecond})

	const n = 60
	var accepted, unavailable atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			body := payload("firing", firing("a1", fmt.Sprintf("%04x", i), t0))
			for {
				code, _ := tb.post(t, "Bearer "+testToken, body)
				if code == 202 {
					accepted.Add(1)
					time.Sleep(20 * time.Millisecond)
					break
				}
				if code != 503 {
					t.Errorf("alert %d: code %d, want 202 or 503", i, code)
					return
				}
				unavailable.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	waitFor(t, "some alerts accepted", 10*time.Second, func() bool { return accepted.Load() >= n/3 })
	tb.redis.Kill()
	time.Sleep(3 * time.Second)
	tb.redis.Restart()
	<-done
	if unavailable.Load() == 0 {
		t.Error("no 503 while Redis was down: the outage was not exercised")
	}
	checkOnce(t, ec, n, 30*time.Second)
	runs, err := tb.Store().List(context.Background(), jobs.RunFilter{Limit: 1000})
	if err != nil || len(runs) != n {
		t.Errorf("%d run records (%v), want %d", len(runs), err, n)
	}
	if l := tb.c.XLen(context.Background(), jobs.Keys{}.Jobs("n1")).Val(); l != 0 {
		t.Errorf("%d jobs left in the stream", l)
	}
	t.Logf("%d alerts accepted, %d answers 503 during the outage", accepted.Load(), unavailable.Load())
}
