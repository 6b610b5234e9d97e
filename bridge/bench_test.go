package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fanOut runs total calls of f over clients goroutines and returns the
// wall time and each call's latency.
func fanOut(clients, total int, f func(i int) error) (time.Duration, []time.Duration, error) {
	lat := make([]time.Duration, total)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				t := time.Now()
				if err := f(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, nil, err
	}
	return time.Since(start), lat, nil
}

// BenchmarkIngest measures, in process, distinct single-alert webhooks over loopback
// HTTP with keep-alive into a real redis-server, and in the same run the
// raw Redis baseline from the same number of clients: PING, and the
// enqueue script itself (SET NX + XADD) without HTTP.
func BenchmarkIngest(b *testing.B) {
	const clients, total = 16, 40000
	rs := redistest.Start(b, redistest.Options{})
	cfg := loadTestConfig(b, testHCL)
	client := redis.NewClient(&redis.Options{Addr: rs.Addr(), PoolSize: clients * 2})
	defer client.Close()
	br := New(Options{Client: client, Config: func() *hcl.Config { return cfg }, Token: testToken})
	mux := http.NewServeMux()
	br.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// The load generator is a lean keep-alive HTTP/1.1 client (one
	// connection per client, like wrk), so that the shared cores go to the
	// bridge rather than to net/http's client machinery.
	addr := strings.TrimPrefix(srv.URL, "http://")
	conns := make(chan *benchConn, clients)
	for range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns <- &benchConn{c: c, r: bufio.NewReader(c)}
	}
	startsAt := time.Now().UTC().Format(time.RFC3339)

	post := func(i int) error {
		body := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"medic","alerts":[{"status":"firing","labels":{"alertname":"AgentDown","agent":"a1","node":"n1","instance":"i%d"},"startsAt":%q,"fingerprint":"%016x"}]}`, i, startsAt, i+1)
		req := fmt.Sprintf("POST /api/v1/webhook HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, testToken, len(body), body)
		c := <-conns
		defer func() { conns <- c }()
		if _, err := io.WriteString(c.c, req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 || !strings.Contains(string(data), `"accepted":1`) {
			return fmt.Errorf("webhook %d: %d %s", i, resp.StatusCode, data)
		}
		return nil
	}
	// Warm up connections and the script cache.
	if _, _, err := fanOut(clients, 2000, func(i int) error { return post(total + i) }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	wall, lat, err := fanOut(clients, total, post)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	rate := float64(total) / wall.Seconds()
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	if n := client.XLen(context.Background(), jobs.Keys{}.Jobs("n1")).Val(); n != int64(total+2000) {
		b.Fatalf("%d jobs in the stream, want %d", n, total+2000)
	}

	pingWall, _, err := fanOut(clients, total, func(int) error { return client.Ping(context.Background()).Err() })
	if err != nil {
		b.Fatal(err)
	}
	k := jobs.Keys{Prefix: "base:"}
	scriptWall, _, err := fanOut(clients, total, func(i int) error {
		return jobs.EnqueueScript().Run(context.Background(), client, []string{k.Dedup("n1", fmt.Sprintf("%016x", i), time.Unix(0, 0)), k.Jobs("n1")},
			"id", 86400000, `{"id":"id"}`).Err()
	})
	if err != nil {
		b.Fatal(err)
	}
	pingRate := float64(total) / pingWall.Seconds()
	scriptRate := float64(total) / scriptWall.Seconds()

	b.ReportMetric(rate, "webhooks/s")
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(scriptRate, "raw-enqueue/s")
	b.ReportMetric(rate/scriptRate, "ratio")
	verdict := func(ok bool) string {
		if ok {
			return "meets goal"
		}
		return "MISSES goal"
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("bridge ingest, in-process (%d cores, load average %s, %d keep-alive clients, %d distinct minimal single-alert webhooks, httptest server, real redis-server without AOF; clients, bridge and Redis share the cores; the figure for the binary is BenchmarkIngestBinary in e2e):\n",
		runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:1], ""), clients, total)
	fmt.Printf("  webhooks       %8.0f/s   goal ≥ 10000/s  %s\n", rate, verdict(rate >= 10000))
	fmt.Printf("  latency        p50 %.2f ms, p99 %.2f ms   goal p99 ≤ 10 ms  %s\n", ms(p50), ms(p99), verdict(p99 <= 10*time.Millisecond))
	fmt.Printf("  raw Redis      PING %8.0f/s, enqueue script (SET NX + XADD) %8.0f/s from %d clients\n", pingRate, scriptRate, clients)
	fmt.Printf("  ratio          webhook / raw enqueue = %.2f, webhook / PING = %.2f\n", rate/scriptRate, rate/pingRate)
}

// BenchmarkWebhookToFirstStep measures the time from sending a webhook
// until the node's consumer starts the run (the Runner's first line),
// with the consumer blocked in XREADGROUP BLOCK as in production.
func BenchmarkWebhookToFirstStep(b *testing.B) {
	const alerts = 300
	rs := redistest.Start(b, redistest.Options{AOF: true})
	cfg := loadTestConfig(b, testHCL)
	client := rs.Client()
	br := New(Options{Client: client, Config: func() *hcl.Config { return cfg }})
	mux := http.NewServeMux()
	br.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var mu sync.Mutex
	started := map[string]time.Time{}
	runner := runnerFunc(func(_ context.Context, req runbooks.Request) *runbooks.RunRecord {
		t := time.Now()
		mu.Lock()
		started[req.Alert.Fingerprint] = t
		mu.Unlock()
		return &runbooks.RunRecord{ID: req.ID, Runbook: req.Runbook, Steps: []runbooks.Step{}, Outcome: runbooks.OutcomeHealthy, Started: t, Finished: t}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		jobs.NewConsumer(jobs.ConsumerOptions{Client: client, Node: "n1", Runner: runner, Store: jobs.NewRunStore(client, jobs.StoreOptions{}), Block: 5 * time.Second}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	startsAt := time.Now().UTC().Format(time.RFC3339)
	sent := map[string]time.Time{}
	b.ResetTimer()
	for i := range alerts {
		fp := fmt.Sprintf("%016x", i+1)
		body := fmt.Sprintf(`{"alerts":[{"status":"firing","labels":{"alertname":"AgentDown","agent":"a1","node":"n1","i":"%d"},"startsAt":%q,"fingerprint":%q}]}`, i, startsAt, fp)
		sent[fp] = time.Now()
		resp, err := http.Post(srv.URL+"/api/v1/webhook", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			b.Fatalf("webhook: %d", resp.StatusCode)
		}
		time.Sleep(5 * time.Millisecond) // one at a time, like alerts arriving
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(started)
		mu.Unlock()
		if n == alerts {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d jobs started", n, alerts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	var lat []time.Duration
	for fp, t := range sent {
		lat = append(lat, started[fp].Sub(t))
	}
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	verdict := "meets goal"
	if p50 > 50*time.Millisecond {
		verdict = "MISSES goal"
	}
	fmt.Printf("webhook receipt → node starts the run (%d alerts, AOF always, XREADGROUP BLOCK):\n", alerts)
	fmt.Printf("  p50 %.2f ms, p99 %.2f ms, max %.2f ms   goal p50 ≤ 50 ms  %s\n", ms(p50), ms(p99), ms(lat[len(lat)-1]), verdict)
}

type benchConn struct {
	c net.Conn
	r *bufio.Reader
}
