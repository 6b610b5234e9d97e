package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
)

// The ingest load: what a user measures with wrk against `medic bridge`.
const (
	ingestAgents  = 10 // agents, each on its own node
	ingestThreads = 2  // wrk -t
	ingestConns   = 10 // wrk -c, and redis-benchmark -c
	// ingestManyConns is a second load: a fleet's Alertmanagers, and the
	// retries they send, keep more than 10 webhooks in flight, and the
	// group commit lets more of them share one fsync.
	ingestManyConns   = 64
	ingestDuration    = 8 * time.Second  // wrk -d
	ingestMaxRequests = 400000           // per run, across threads
	ingestBaselineOps = 100000           // redis-benchmark -n
	ingestTimeout     = 90 * time.Second // the whole of one measurement
)

func ingestHCL() string {
	var b strings.Builder
	for i := range ingestAgents {
		fmt.Fprintf(&b, "agent \"ingest-%02d\" {\n  node    = \"node-%02d\"\n  command = [\"/bin/sleep\", \"3600\"]\n}\n\n", i, i)
	}
	b.WriteString(`runbook "agent-recovery" {
  match { alertname = "MedicAgentUnhealthy" }
  verify {
    attempts = 3
    interval = "2s"
  }
}
`)
	return b.String()
}

// ingestFigures is one measurement through the binary and its baseline.
type ingestFigures struct {
	aof              bool
	conns            int
	requests         int64
	rate             float64
	p50, p99         time.Duration
	bridgeCPU        float64 // µs per webhook
	redisCPU         float64 // µs per webhook
	jobs             int64
	baseRate         float64
	baseRedisCPU     float64 // µs per EVALSHA
	baseP50, baseP99 float64 // ms
	// batches is how many group-commit batches the bridge sent, and
	// batchEvery the mean interval between them, over the measured run.
	batches    float64
	batchEvery time.Duration
	// fsync is the disk under Redis's AOF: fdatasync latency in its dir.
	fsyncP50, fsyncP99 time.Duration
}

// BenchmarkIngestBinary measures what users run: the built `medic bridge`
// as its own process, a real redis-server with appendfsync always, and wrk
// over loopback sending full Alertmanager v4 payloads with distinct
// fingerprints. In the same run it measures the raw baseline (the same
// enqueue script sent straight to the same Redis by redis-benchmark from
// the same number of connections) and, because it is cheap, both again
// with the AOF off.
func BenchmarkIngestBinary(b *testing.B) {
	wrk := harness.LookPath(b, "wrk")
	rb := harness.LookPath(b, "redis-benchmark")
	script, err := filepath.Abs("testdata/webhook.lua")
	if err != nil {
		b.Fatal(err)
	}
	var figs []ingestFigures
	b.ResetTimer()
	for _, load := range []struct {
		aof   bool
		conns int
	}{{true, ingestConns}, {false, ingestConns}, {true, ingestManyConns}} {
		figs = append(figs, measureIngest(b, wrk, rb, script, load.aof, load.conns))
	}
	floorRate, floorCPU, _ := httpFloor(b, wrk, script, 0)
	waitRate, waitCPU, waitEvery := httpFloor(b, wrk, script, figs[0].batchEvery)
	// The rhythm the rate goal needs: batches of the size the bridge
	// formed, 10,000 webhooks a second.
	perBatch := float64(figs[0].jobs) / max(figs[0].batches, 1)
	goalEvery := time.Duration(perBatch / 10000 * float64(time.Second))
	goalRate, goalCPU, goalPeriod := httpFloor(b, wrk, script, goalEvery)
	b.StopTimer()
	f := figs[0]
	b.ReportMetric(f.rate, "webhooks/s")
	b.ReportMetric(ms(f.p50), "p50-ms")
	b.ReportMetric(ms(f.p99), "p99-ms")
	b.ReportMetric(f.bridgeCPU, "bridge-µs/webhook")
	b.ReportMetric(f.redisCPU, "redis-µs/webhook")
	b.ReportMetric(f.rate/f.baseRate, "ratio")

	verdict := func(ok bool) string {
		if ok {
			return "meets goal"
		}
		return "MISSES goal"
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("ingest through the binary (%d cores, load average %s; wrk -t%d -c%d -d%s, full Alertmanager v4 single-alert payloads, bearer token, %d agents on %d nodes; wrk, bridge and Redis share the cores):\n",
		runtime.NumCPU(), strings.Fields(string(load))[0], ingestThreads, ingestConns, ingestDuration, ingestAgents, ingestAgents)
	for _, f := range figs {
		mode := "AOF always"
		if !f.aof {
			mode = "AOF off   "
		}
		if f.conns != ingestConns {
			mode = fmt.Sprintf("AOF always, wrk -c%d", f.conns)
		}
		fmt.Printf("  %s  webhooks %8.0f/s  p50 %.2f ms  p99 %.2f ms  bridge CPU %5.1f µs/webhook  Redis CPU %5.1f µs/webhook  (%d requests, %d jobs in Redis, %.1f per batch, a batch every %d µs)\n",
			mode, f.rate, ms(f.p50), ms(f.p99), f.bridgeCPU, f.redisCPU, f.requests, f.jobs, float64(f.jobs)/max(f.batches, 1), f.batchEvery.Microseconds())
		fmt.Printf("  %s  raw baseline: redis-benchmark -c %d EVALSHA enqueue %8.0f/s  p50 %.2f ms  p99 %.2f ms  Redis CPU %5.1f µs/op  → ratio bridge/baseline %.2f\n",
			mode, f.conns, f.baseRate, f.baseP50, f.baseP99, f.baseRedisCPU, f.rate/f.baseRate)
		if f.aof && f.conns == ingestConns {
			fmt.Printf("  %s  the disk, same run: fdatasync of 4 KiB in Redis's dir p50 %.2f ms, p99 %.2f ms (with %d connections, at most %d webhooks share one fsync)\n",
				mode, ms(f.fsyncP50), ms(f.fsyncP99), ingestConns, ingestConns)
		}
	}
	fmt.Printf("  floor       net/http alone (a handler that reads the body and answers 202, no Redis; same wrk load): %8.0f/s, %5.1f µs CPU/request\n", floorRate, floorCPU)
	fmt.Printf("  floor       net/http alone at the bridge's rhythm (requests released together every %d µs, the bridge's batch interval with the AOF always, -c%d; achieved %d µs): %8.0f/s, %5.1f µs CPU/request\n",
		figs[0].batchEvery.Microseconds(), ingestConns, waitEvery.Microseconds(), waitRate, waitCPU)
	fmt.Printf("  floor       net/http alone at the rhythm 10000/s would need (batches of %.1f every %d µs; achieved %d µs): %8.0f/s, %5.1f µs CPU/request\n",
		perBatch, goalEvery.Microseconds(), goalPeriod.Microseconds(), goalRate, goalCPU)
	fmt.Printf("  goals (AOF always, wrk -c%d): webhooks ≥ 10000/s %s; p99 ≤ 10 ms %s; bridge CPU ≤ 40 µs/webhook %s\n",
		ingestConns, verdict(f.rate >= 10000), verdict(f.p99 <= 10*time.Millisecond), verdict(f.bridgeCPU <= 40))
	m := figs[2]
	fmt.Printf("  the same goals with wrk -c%d: webhooks ≥ 10000/s %s; p99 ≤ 10 ms %s; bridge CPU ≤ 40 µs/webhook %s\n",
		m.conns, verdict(m.rate >= 10000), verdict(m.p99 <= 10*time.Millisecond), verdict(m.bridgeCPU <= 40))
}

func measureIngest(b *testing.B, wrk, rb, script string, aof bool, conns int) ingestFigures {
	ctx, cancel := context.WithTimeout(context.Background(), ingestTimeout)
	defer cancel()
	f := ingestFigures{aof: aof, conns: conns}
	rs := redistest.Start(b, redistest.Options{AOF: aof})
	client := rs.Client()
	dir := b.TempDir()
	cfg := filepath.Join(dir, "estate.hcl")
	if err := os.WriteFile(cfg, []byte(ingestHCL()), 0o644); err != nil {
		b.Fatal(err)
	}
	token, tokenFile := harness.Token(b)
	br := harness.StartBridge(b, harness.BridgeOptions{
		Medic: bins.Medic, ConfigPath: cfg, RedisURL: rs.URL(), TokenFile: tokenFile, LogLevel: "info", LogDir: dir,
		// No node runs here: the jobs pile up for the count, unchecked.
		Extra: []string{"--bridge.node-silence=0"},
	})
	url := br.WebhookURL()
	runWrk := func(run int, d time.Duration, max int) wrkResult {
		b.Helper()
		args := []string{"-t" + strconv.Itoa(ingestThreads), "-c" + strconv.Itoa(conns), "-d" + d.String(),
			"--latency", "--timeout", "5s", "-s", script, url, "--",
			token, strconv.Itoa(run), strconv.Itoa(ingestAgents), strconv.Itoa(max / ingestThreads)}
		out, err := runBounded(ctx, wrk, args...)
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		r, err := parseWrk(out)
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		return r
	}
	countJobs := func() int64 {
		var n int64
		for i := range ingestAgents {
			n += client.XLen(ctx, jobs.Keys{}.Jobs(fmt.Sprintf("node-%02d", i))).Val()
		}
		return n
	}

	// Warm up: connections, the script cache, the bridge's heap.
	runWrk(1, time.Second, 20000)
	time.Sleep(200 * time.Millisecond)
	jobs0 := countJobs()
	batches := func() float64 {
		n, err := scrapeSum(br.URL+"/metrics", "medic_bridge_enqueue_batch_alerts_count")
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	batches0 := batches()
	bridge0, redis0 := cpuTime(b, br.PID()), cpuTime(b, rs.PID())
	start := time.Now()
	r := runWrk(2, ingestDuration, ingestMaxRequests)
	took := time.Since(start)
	// Requests wrk gave up on at its deadline may still be finishing.
	time.Sleep(200 * time.Millisecond)
	bridge1, redis1 := cpuTime(b, br.PID()), cpuTime(b, rs.PID())
	f.batches = batches() - batches0
	if f.batches > 0 {
		f.batchEvery = time.Duration(float64(took) / f.batches)
	}
	f.jobs = countJobs() - jobs0
	f.requests, f.rate, f.p50, f.p99 = r.requests, r.rate, r.p50, r.p99
	switch {
	case r.non2xx > 0 || r.errors > 0:
		b.Fatalf("wrk: %d non-2xx responses, %d socket errors in %d requests", r.non2xx, r.errors, r.requests)
	case r.requests < 1000:
		b.Fatalf("wrk: only %d requests", r.requests)
	// Every answered request was accepted; those cut off at wrk's
	// deadline (at most one per connection) may have been too.
	case f.jobs < r.requests || f.jobs > r.requests+int64(conns):
		b.Fatalf("%d jobs in Redis after %d webhooks answered 202: the bridge did not enqueue one job per webhook", f.jobs, r.requests)
	}
	f.bridgeCPU = float64(bridge1-bridge0) / float64(time.Microsecond) / float64(r.requests)
	f.redisCPU = float64(redis1-redis0) / float64(time.Microsecond) / float64(r.requests)

	// The raw baseline: the same script, with a job of the size the
	// bridge wrote, from as many connections, to the same server.
	entries, err := client.XRangeN(ctx, jobs.Keys{}.Jobs("node-00"), "-", "+", 1).Result()
	if err != nil || len(entries) == 0 {
		b.Fatalf("read a job back: %v", err)
	}
	job, _ := entries[0].Values["job"].(string)
	sha, err := jobs.EnqueueScript().Load(ctx, client).Result()
	if err != nil {
		b.Fatal(err)
	}
	k := jobs.Keys{Prefix: "base:"}
	redis0 = cpuTime(b, rs.PID())
	out, err := runBounded(ctx, rb, "-h", "127.0.0.1", "-p", strconv.Itoa(rs.Port), "-c", strconv.Itoa(conns),
		"-n", strconv.Itoa(ingestBaselineOps), "-r", "1000000000", "--csv",
		"EVALSHA", sha, "3", k.Dedup("node-00", "__rand_int__", time.UnixMilli(1)), k.Jobs("node-00"), k.Seen("node-00"), "id", "86400000", job, "0")
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	redis1 = cpuTime(b, rs.PID())
	f.baseRate, f.baseP50, f.baseP99, err = parseRedisBenchmark(out)
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	// Random keys may repeat (then the script answers "duplicate" without
	// an XADD); with 10^9 of them, a few in 10^5 at most.
	if n := client.XLen(ctx, k.Jobs("node-00")).Val(); n < ingestBaselineOps*99/100 {
		b.Fatalf("baseline queued %d jobs of %d", n, ingestBaselineOps)
	}
	f.baseRedisCPU = float64(redis1-redis0) / float64(time.Microsecond) / ingestBaselineOps

	if aof {
		f.fsyncP50, f.fsyncP99 = fsyncLatency(b, rs.Dir)
	}
	br.Stop(5 * time.Second)
	rs.Stop()
	return f
}

// fsyncLatency times appends of 4 KiB, each followed by fdatasync (what
// Redis does per event-loop iteration with appendfsync always), in dir.
func fsyncLatency(b *testing.B, dir string) (p50, p99 time.Duration) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	d := make([]time.Duration, 200)
	for i := range d {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		d[i] = time.Since(t)
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// httpFloor is what net/http alone costs here: the same wrk load against
// a handler that reads the body and answers 202, served by this process
// (whose other goroutines are idle meanwhile). With every > 0 the handler
// first waits, as the bridge's requests wait for their batch's round trip
// to Redis, until one goroutine releases all waiting requests together,
// every that often: net/http at the bridge's own rhythm of parking and
// waking, without Redis, decoding or routing.
func httpFloor(b *testing.B, wrk, script string, every time.Duration) (rate, cpuPerRequest float64, period time.Duration) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	answer := []byte(`{"accepted":1,"duplicates":0,"ignored":0}` + "\n")
	var (
		mu      sync.Mutex
		waiting []chan struct{}
		ticks   atomic.Int64
	)
	stop := make(chan struct{})
	defer close(stop)
	if every > 0 {
		// nanosleep(2) to fixed deadlines, not a Go timer: an idle
		// runtime rounds a timer under a millisecond up to its poller's
		// 1 ms, which would stretch the rhythm. The period achieved is
		// measured and returned.
		go func() {
			next := time.Now()
			for {
				select {
				case <-stop:
					return
				default:
				}
				next = next.Add(every)
				if d := time.Until(next); d > 0 {
					ts := syscall.NsecToTimespec(int64(d))
					_ = syscall.Nanosleep(&ts, nil)
				}
				ticks.Add(1)
				mu.Lock()
				release := waiting
				waiting = nil
				mu.Unlock()
				for _, c := range release {
					close(c)
				}
			}
		}()
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if every > 0 {
			c := make(chan struct{})
			mu.Lock()
			waiting = append(waiting, c)
			mu.Unlock()
			select {
			case <-c:
			case <-stop:
			}
		}
		w.Header()["Content-Type"] = []string{"application/json"}
		w.WriteHeader(http.StatusAccepted)
		w.Write(answer)
	})}
	go srv.Serve(l)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ingestTimeout)
	defer cancel()
	cpu0, ticks0, start := cpuTime(b, os.Getpid()), ticks.Load(), time.Now()
	out, err := runBounded(ctx, wrk, "-t"+strconv.Itoa(ingestThreads), "-c"+strconv.Itoa(ingestConns), "-d4s",
		"-s", script, "http://"+l.Addr().String()+"/api/v1/webhook", "--", "", "3", strconv.Itoa(ingestAgents), "0")
	cpu1 := cpuTime(b, os.Getpid())
	if n := ticks.Load() - ticks0; n > 0 {
		period = time.Since(start) / time.Duration(n)
	}
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	m, rm := wrkRequests.FindStringSubmatch(out), wrkRate.FindStringSubmatch(out)
	if m == nil || rm == nil {
		b.Fatalf("wrk: no request count\n%s", out)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	rate, _ = strconv.ParseFloat(rm[1], 64)
	return rate, float64(cpu1-cpu0) / float64(time.Microsecond) / n, period
}

// runBounded runs a load generator in its own process group, killed with
// its group when ctx ends.
func runBounded(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = procsig.ChildAttr()
	cmd.Cancel = func() error { return procsig.CmdGroup(cmd, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cpuTime is a process's user + system CPU time from /proc/PID/stat.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	if pid <= 1 {
		b.Fatalf("cpu time: no such process (pid %d)", pid)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces: state is field 3, utime 14, stime 15.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse /proc/%d/stat: %q", pid, s)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

type wrkResult struct {
	requests, non2xx, errors int64
	rate                     float64
	p50, p99                 time.Duration
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkRate     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx   = regexp.MustCompile(`(?m)Non-2xx or 3xx responses: (\d+)`)
	wrkErrors   = regexp.MustCompile(`(?m)Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRequests.FindStringSubmatch(out)
	rm := wrkRate.FindStringSubmatch(out)
	if m == nil || rm == nil {
		return r, fmt.Errorf("no request count or rate in the output")
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.rate, _ = strconv.ParseFloat(rm[1], 64)
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkErrors.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("no latency distribution in the output")
	}
	return r, nil
}

// parseRedisBenchmark reads redis-benchmark --csv: a header line, then
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
// "p95_latency_ms","p99_latency_ms","max_latency_ms". The test name is the
// command line, commas and quotes included, so the figures are read from
// the end.
func parseRedisBenchmark(out string) (rps, p50, p99 float64, err error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 8 || strings.HasPrefix(line, `"test"`) {
			continue
		}
		f = f[len(f)-7:]
		for i := range f {
			f[i] = strings.Trim(f[i], `"`)
		}
		rps, err = strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		p50, _ = strconv.ParseFloat(f[3], 64)
		p99, _ = strconv.ParseFloat(f[5], 64)
		return rps, p50, p99, nil
	}
	return 0, 0, 0, fmt.Errorf("no result line")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
