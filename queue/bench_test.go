package queue

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/queue/devicetest"
)

// publishConcurrently publishes configs 0..total-1 (config(k) builds the
// k-th) from producers goroutines, each taking the next batch configs and
// publishing them with one PublishBatch, and waits for them; done, if
// set, sees each batch with its results. A failure fails b.
func publishConcurrently(b *testing.B, h *harness, total int64, producers int, batch int64, config func(k int64) Config, done func([]Config, []Published)) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for {
				n := next.Add(batch) - batch
				if n >= total {
					return
				}
				cs := make([]Config, min(batch, total-n))
				for j := range cs {
					cs[j] = config(n + int64(j))
				}
				res, err := h.pub.PublishBatch(context.Background(), h.pool, cs)
				if err != nil {
					b.Error(err)
					return
				}
				if done != nil {
					done(cs, res)
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// ackedTotal is how many deliveries the pool's devices have acknowledged.
func ackedTotal(client redis.UniversalClient, k Keys) int64 {
	acks, _ := client.HVals(context.Background(), k.Ack()).Result()
	var sum int64
	for _, a := range acks {
		n, _ := strconv.ParseInt(a, 10, 64)
		sum += n
	}
	return sum
}

// BenchmarkDispatchInProcess is the dispatch figure measured with the
// agent in the benchmark's own process (no AOF): a lower-overhead view
// of the same path that BenchmarkDispatchThroughput measures as deployed,
// kept to compare the consumer's own cost between changes.
func BenchmarkDispatchInProcess(b *testing.B) {
	const total = 50000
	const devices = 10
	for i := 0; i < b.N; i++ {
		srv, client := standalone(b, false)
		h := newHarness(b, client, "", fmt.Sprintf("bench%d", i))
		h.startAgent("a1", func(o *ConsumerOptions) {
			o.HeartbeatInterval, o.HeartbeatTimeout = 500*time.Millisecond, 2*time.Second
			o.RetryMin, o.RetryMax = 10*time.Millisecond, time.Second
		})
		waitFor(b, 5*time.Second, "agent registered", func() bool { return len(h.status().Agents) == 1 })
		payload := []byte(`{"vlan":100,"ports":[1,2,3,4],"description":"benchmark config"}`)
		// Two producers publish batches of 100 (PublishBatch: one round
		// trip per batch) while the agent delivers.
		start := time.Now()
		publishConcurrently(b, h, total, 2, 100, func(k int64) Config {
			return Config{Device: fmt.Sprintf("dev%d", k%devices), Payload: payload}
		}, nil)
		published := time.Since(start)
		waitFor(b, 120*time.Second, "all acknowledged", func() bool { return ackedTotal(client, h.keys) == total })
		elapsed := time.Since(start)
		rate := float64(total) / elapsed.Seconds()
		if h.dev.AppliedTotal() != total {
			b.Fatalf("devices applied %d, want %d", h.dev.AppliedTotal(), total)
		}
		for _, d := range h.dev.Devices() {
			var prev int64
			for _, ev := range h.dev.History(d) {
				if ev.Outcome == devicetest.Applied {
					if ev.Seq != prev+1 {
						b.Fatalf("%s: applied seq %d after %d", d, ev.Seq, prev)
					}
					prev = ev.Seq
				}
			}
		}
		xadd := redisBenchmarkXADD(b, srv)
		b.ReportMetric(rate, "delivered/s")
		b.ReportMetric(xadd, "xadd/s")
		b.ReportMetric(rate/xadd, "ratio")
		fmt.Printf("dispatch (in-process agent, no AOF): %d configs to %d devices delivered+acked in %s: %.0f configs/s (publishing alone took %s: %.0f/s)\n",
			total, devices, elapsed.Round(time.Millisecond), rate, published.Round(time.Millisecond), float64(total)/published.Seconds())
		fmt.Printf("dispatch (in-process agent, no AOF): redis-benchmark XADD on the same server: %.0f/s; end-to-end / XADD = %.3f (load average %s on %d CPUs)\n",
			xadd, rate/xadd, loadavg(), runtime.NumCPU())
	}
}

// loadavg is the 1-minute load average, printed next to the figures: the
// end-to-end rate is latency-bound and drops on a shared machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

var rpsRE = regexp.MustCompile(`([0-9.]+) requests per second`)

func redisBenchmarkXADD(b *testing.B, srv *redistest.Server) float64 {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Fatalf("redis-benchmark not found: run `make deps` (apt-get install -y redis-tools)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port),
		"-n", "100000", "-q", "XADD", "medic:bench:xadd", "*", "f", "v").CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	m := rpsRE.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		b.Fatalf("redis-benchmark: no rate in %q", out)
	}
	v, _ := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	return v
}

// BenchmarkSwitchover10k measures lock-to-unlock time of a switchover
// that migrates a 10,000-config backlog.
func BenchmarkSwitchover10k(b *testing.B) {
	const backlog = 10000
	_, client := standalone(b, false)
	for i := 0; i < b.N; i++ {
		h := newHarness(b, client, "", fmt.Sprintf("sw%d", i))
		a1 := h.startAgent("a1")
		h.startAgent("a2")
		c := h.startCoordinator(nil, func(o *CoordinatorOptions) { o.Batch = 1000 })
		waitFor(b, 5*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 2 })
		h.produce(context.Background(), []string{"d0"}, 1, 0)
		h.waitApplied(5 * time.Second)
		a1.hold(true) // a1 looks alive but delivers nothing: its backlog grows
		payload := []byte(`{"vlan":1}`)
		publishConcurrently(b, h, backlog, 8, 1, func(k int64) Config {
			return Config{Device: "dev" + strconv.Itoa(int(k%10)), Payload: payload}
		}, nil)
		st := h.status()
		if st.Backlog < backlog {
			b.Fatalf("backlog %d, want >= %d", st.Backlog, backlog)
		}
		res, err := c.c.Trigger(context.Background(), h.pool, "a1", "a2", "bench")
		if err != nil {
			b.Fatal(err)
		}
		started, _ := client.HGet(context.Background(), h.keys.Ctl(), "started_ms").Int64()
		since, _ := client.HGet(context.Background(), h.keys.Ctl(), "since_ms").Int64()
		lock := time.Duration(since-started) * time.Millisecond
		b.ReportMetric(lock.Seconds(), "switchover_s")
		fmt.Printf("switchover: %d-config backlog moved and pool unlocked in %s (server clock; %.3fs seen by the caller); goal <= 0.5s\n",
			st.Backlog, lock, res.Seconds)
		a1.resume()
		waitFor(b, 60*time.Second, "backlog delivered", func() bool { return h.dev.AppliedTotal() == backlog+1 })
	}
}

// BenchmarkAgentKillToFirstDelivery SIGKILLs the active agent process and
// measures the time until the standby's first delivery, with
// check_interval 1s and the heartbeat `medic agent` derives from it
// (250ms, timeout 1s).
func BenchmarkAgentKillToFirstDelivery(b *testing.B) {
	const checkInterval = time.Second
	srv, client := standalone(b, false)
	for i := 0; i < b.N; i++ {
		h := newHarness(b, client, "", fmt.Sprintf("kill%d", i))
		a1 := h.startChildHB(srv.Addr(), "a1", "250ms")
		waitFor(b, 5*time.Second, "a1 registered", func() bool { return len(h.status().Agents) == 1 })
		h.produce(context.Background(), []string{"d"}, 1, 0)
		h.startChildHB(srv.Addr(), "a2", "250ms")
		h.startCoordinator(nil, func(o *CoordinatorOptions) { o.Pools[0].CheckInterval = checkInterval; o.LeaseTTL = 3 * time.Second })
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); h.produce(ctx, []string{"d"}, 1<<30, 2*time.Millisecond) }()
		time.Sleep(1500 * time.Millisecond) // the coordinator is mid-interval
		killed := time.Now()
		_ = procsig.Cmd(a1.cmd, syscall.SIGKILL)
		var first time.Time
		waitFor(b, 10*time.Second, "first delivery by a2", func() bool {
			for _, ev := range h.dev.History("d") {
				if ev.Agent == "a2" && ev.Outcome == devicetest.Applied {
					first = ev.At
					return true
				}
			}
			return false
		})
		cancel()
		wg.Wait()
		d := first.Sub(killed)
		b.ReportMetric(d.Seconds(), "kill_to_delivery_s")
		fmt.Printf("failover: SIGKILL of the active agent to first delivery by the new agent: %s (goal <= check_interval %s + 0.5s)\n",
			d.Round(time.Millisecond), checkInterval)
		h.waitApplied(10 * time.Second)
		h.check()
	}
}
