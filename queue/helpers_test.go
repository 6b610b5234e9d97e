package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/queue/devicetest"
	"github.com/redis/go-redis/v9"
)

// testLogger logs to the test output when MEDIC_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("MEDIC_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// harness is one pool on a real Redis with a strict device server.
type harness struct {
	t      testing.TB
	client redis.UniversalClient
	url    string
	pool   string
	keys   Keys
	dev    *devicetest.Server
	pub    *Publisher

	mu        sync.Mutex
	published map[string][]string
	nextKey   int
}

func newHarness(t testing.TB, client redis.UniversalClient, url, pool string) *harness {
	t.Helper()
	k, err := NewKeys("", pool)
	if err != nil {
		t.Fatal(err)
	}
	dev := devicetest.New()
	t.Cleanup(dev.Close)
	return &harness{t: t, client: client, url: url, pool: pool, keys: k, dev: dev,
		pub:       NewPublisher(PublisherOptions{Client: client}),
		published: map[string][]string{}}
}

func standalone(t testing.TB, aof bool) (*redistest.Server, redis.UniversalClient) {
	s := redistest.Start(t, redistest.Options{AOF: aof})
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return s, c
}

// publish publishes one config for device, retrying with the same
// idempotency key until Redis answers (e.g. across a restart), and records
// it under its seq for the final check.
func (h *harness) publish(ctx context.Context, device string) (Published, error) {
	h.mu.Lock()
	h.nextKey++
	key := fmt.Sprintf("k%d", h.nextKey)
	h.mu.Unlock()
	payload, _ := json.Marshal(map[string]any{"device": device, "key": key})
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, err := h.pub.Publish(pctx, h.pool, device, payload, key)
		cancel()
		if err == nil {
			h.mu.Lock()
			defer h.mu.Unlock()
			// Producers of one device may race: the seq, not the order of
			// the replies, is the config's place.
			list := h.published[device]
			for int64(len(list)) < res.Seq {
				list = append(list, "")
			}
			if list[res.Seq-1] != "" {
				h.t.Errorf("publish %s: seq %d assigned twice", device, res.Seq)
			}
			list[res.Seq-1] = string(payload)
			h.published[device] = list
			return res, nil
		}
		if ctx.Err() != nil {
			return res, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) total() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for _, l := range h.published {
		n += int64(len(l))
	}
	return n
}

// producer publishes n configs round-robin over devices, one device's
// configs strictly after each other.
func (h *harness) produce(ctx context.Context, devices []string, n int, pause time.Duration) {
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if _, err := h.publish(ctx, devices[i%len(devices)]); err != nil {
			return
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// waitApplied waits until the devices applied everything published.
func (h *harness) waitApplied(timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		want := h.total()
		got := h.dev.AppliedTotal()
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			st, _ := ReadStatus(context.Background(), h.client, h.keys)
			h.t.Fatalf("devices applied %d of %d configs; pool status %+v", got, want, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check verifies the guarantees on every device.
func (h *harness) check() {
	h.t.Helper()
	h.mu.Lock()
	pub := map[string][]string{}
	for d, l := range h.published {
		pub[d] = append([]string(nil), l...)
	}
	h.mu.Unlock()
	if bad := h.dev.Check(pub); len(bad) > 0 {
		if len(bad) > 20 {
			bad = append(bad[:20], fmt.Sprintf("... and %d more", len(bad)-20))
		}
		h.t.Errorf("device guarantees violated:\n%s", strings.Join(bad, "\n"))
	}
}

// waitAcked waits until every published config is acknowledged in Redis
// (ack hash) and the pool has nothing pending, unlocked.
func (h *harness) waitSettled(timeout time.Duration) Status {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := ReadStatus(context.Background(), h.client, h.keys)
		if err == nil && !st.Lock && st.Backlog == 0 && st.Buffer == 0 {
			acks, _ := h.client.HGetAll(context.Background(), h.keys.Ack()).Result()
			h.mu.Lock()
			ok := true
			for d, l := range h.published {
				if acks[d] != fmt.Sprint(len(l)) {
					ok = false
				}
			}
			h.mu.Unlock()
			if ok {
				return st
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("pool did not settle: %+v err %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// agent runs an in-process Consumer.
type agent struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan struct{}
	paused chan struct{} // closed → not paused; replaced on pause
	pmu    sync.Mutex
	isPaus bool
	noHB   bool
}

func (h *harness) consumerOptions(id string) ConsumerOptions {
	return ConsumerOptions{
		Client: h.client, Pool: h.pool, Agent: id, Host: "test",
		DeviceURL:         h.dev.DeviceURL,
		HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 120 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, RequestTimeout: 2 * time.Second,
		Logger: testLogger(h.t).With("side", "agent"),
	}
}

func (h *harness) startAgent(id string, mod ...func(*ConsumerOptions)) *agent {
	h.t.Helper()
	o := h.consumerOptions(id)
	for _, m := range mod {
		m(&o)
	}
	c, err := NewConsumer(o)
	if err != nil {
		h.t.Fatal(err)
	}
	a := &agent{c: c, done: make(chan struct{}), paused: make(chan struct{})}
	close(a.paused)
	// pause support: a paused agent neither heartbeats nor pushes (an
	// in-process stand-in for SIGSTOP).
	c.hooks.skipHB = func() bool { a.pmu.Lock(); defer a.pmu.Unlock(); return a.noHB }
	c.hooks.beforePush = func(string, int64) {
		a.pmu.Lock()
		ch := a.paused
		a.pmu.Unlock()
		<-ch
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() {
		defer close(a.done)
		c.Run(ctx)
	}()
	h.t.Cleanup(a.stop)
	return a
}

func (a *agent) pause() { a.hold(false) }

// hold blocks the agent's pushes; with heartbeat it keeps beating (a
// stuck agent that still looks alive).
func (a *agent) hold(heartbeat bool) {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	a.noHB = !heartbeat
	if !a.isPaus {
		a.isPaus = true
		a.paused = make(chan struct{})
	}
}

func (a *agent) resume() {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	a.noHB = false
	if a.isPaus {
		a.isPaus = false
		close(a.paused)
	}
}

// crash stops the agent without deregistering (its heartbeat just stops).
func (a *agent) crash() {
	a.c.hooks.noDeregister = true
	a.resume()
	a.cancel()
	<-a.done
}

func (a *agent) stop() {
	a.resume()
	a.cancel()
	<-a.done
}

// coordinator runs an in-process Coordinator.
type coord struct {
	c    *Coordinator
	stop context.CancelFunc
	done chan error
}

func (h *harness) coordOptions() CoordinatorOptions {
	return CoordinatorOptions{
		Client:   h.client,
		Pools:    []PoolSpec{{Name: h.pool, CheckInterval: 100 * time.Millisecond}},
		LeaseTTL: 300 * time.Millisecond, IdleLimit: 2 * time.Second, Batch: 50,
		Logger: testLogger(h.t).With("side", "coordinator"),
	}
}

func (h *harness) startCoordinator(hook func(pool, step string) error, mod ...func(*CoordinatorOptions)) *coord {
	h.t.Helper()
	o := h.coordOptions()
	for _, m := range mod {
		m(&o)
	}
	c, err := NewCoordinator(o)
	if err != nil {
		h.t.Fatal(err)
	}
	c.hook = hook
	ctx, cancel := context.WithCancel(context.Background())
	k := &coord{c: c, stop: cancel, done: make(chan error, 1)}
	go func() { k.done <- c.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); <-k.done })
	return k
}

// status reads the pool's status or fails the test.
func (h *harness) status() Status {
	h.t.Helper()
	st, err := ReadStatus(context.Background(), h.client, h.keys)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds or fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
