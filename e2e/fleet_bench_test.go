package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redistest"
)

// The fleet the status page and GET /api/v1/agents must serve.
const (
	fleetNodes        = 10000
	fleetAgentsPer    = 4
	fleetPublishEvery = 5 * time.Second  // exporter.DefaultStateInterval
	fleetRedisWindow  = 20 * time.Second // Redis CPU is measured over this
	fleetWrkDuration  = 10 * time.Second
	fleetWrkConns     = 4
	fleetTimeout      = 5 * time.Minute
)

// BenchmarkFleet10k measures the fleet view at 10,000 nodes of 4 agents:
// publishers write every node's snapshot every 5 s into a real
// redis-server, as 10,000 medic nodes would (SADD + SET EX 30 of the JSON
// exporter.NodeState, one pipeline per node); over that, Redis's CPU (from
// /proc) and used_memory (INFO). Then the built `medic bridge` runs as its
// own process against that Redis, and wrk measures GET /api/v1/agents and
// the status page while the publishers go on writing; and the bridge's
// RSS. The first request after the bridge starts reads every snapshot
// (cold); later ones are served a shared reading at most 2 s old (then a
// new one is read in the background), which is what a fleet tool's users
// see.
func BenchmarkFleet10k(b *testing.B) {
	wrk := harness.LookPath(b, "wrk")
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	defer cancel()
	rs := redistest.Start(b, redistest.Options{})
	client := rs.Client()

	b.ResetTimer()
	// The publishers: every node's snapshot once at once, then every 5 s.
	pub := newFleetPublishers(fleetNodes, fleetAgentsPer)
	if err := pub.writeAll(ctx, client); err != nil {
		b.Fatal(err)
	}
	pubCtx, stopPub := context.WithCancel(ctx)
	var pubWG sync.WaitGroup
	pubWG.Go(func() { pub.run(pubCtx, client, fleetPublishEvery) })
	defer func() { stopPub(); pubWG.Wait() }()

	// Redis under the publishers alone.
	time.Sleep(fleetPublishEvery) // one full round at the steady rate
	w0, r0, t0 := pub.writes.Load(), cpuTime(b, rs.PID()), time.Now()
	time.Sleep(fleetRedisWindow)
	w1, r1, t1 := pub.writes.Load(), cpuTime(b, rs.PID()), time.Now()
	redisCPU := float64(r1-r0) / float64(t1.Sub(t0)) // cores
	writeRate := float64(w1-w0) / t1.Sub(t0).Seconds()
	mem := redisInfo(b, client, "memory")
	usedMem, _ := strconv.ParseInt(mem["used_memory"], 10, 64)
	if n := client.SCard(ctx, keys.Nodes("medic:")).Val(); n != fleetNodes {
		b.Fatalf("%d nodes in medic:nodes, want %d", n, fleetNodes)
	}
	if pub.errors.Load() > 0 {
		b.Fatalf("%d publisher writes failed", pub.errors.Load())
	}

	// The bridge, as users run it.
	dir := b.TempDir()
	cfg := filepath.Join(dir, "estate.hcl")
	if err := os.WriteFile(cfg, []byte(ingestHCL()), 0o644); err != nil {
		b.Fatal(err)
	}
	token, tokenFile := harness.Token(b)
	br := harness.StartBridge(b, harness.BridgeOptions{
		Medic: bins.Medic, ConfigPath: cfg, RedisURL: rs.URL(), TokenFile: tokenFile, LogLevel: "info", LogDir: dir,
	})
	auth := map[string][]string{"Authorization": {"Bearer " + token}}

	// Cold: the first request reads all 10,000 snapshots.
	start := time.Now()
	code, body, err := harness.Do(ctx, "GET", br.URL+"/api/v1/agents?limit=1", auth, nil)
	cold := time.Since(start)
	if err != nil || code != 200 {
		b.Fatalf("GET /api/v1/agents: %d %v\n%.500s", code, err, body)
	}
	var first struct {
		Counts struct{ Down, Failing, Up int }
		Nodes  struct{ Total, Reporting, Silent int }
		Total  int
	}
	if err := json.Unmarshal(body, &first); err != nil {
		b.Fatal(err)
	}
	if first.Nodes.Total != fleetNodes || first.Nodes.Reporting != fleetNodes || first.Total != fleetNodes*fleetAgentsPer ||
		first.Counts.Down != pub.down || first.Counts.Failing != pub.failing {
		b.Fatalf("the bridge sees %+v, want %d nodes, %d agents, %d down, %d failing", first, fleetNodes, fleetNodes*fleetAgentsPer, pub.down, pub.failing)
	}

	type result struct {
		name string
		wrkResult
	}
	var results []result
	for _, target := range []struct{ name, path, want string }{
		{"GET /api/v1/agents (first 100, problems first)", "/api/v1/agents", `"state":"down"`},
		{"GET /api/v1/agents?state=failing&limit=1000", "/api/v1/agents?state=failing&limit=1000", `"state":"failing"`},
		{"GET /api/v1/agents?node=node-09999", "/api/v1/agents?node=node-09999", `"node":"node-09999"`},
		{"GET / (status page, first 100)", "/?refresh=0", `data-count="down">` + strconv.Itoa(pub.down) + ` down`},
		{"GET /?state=down,failing&node=node-04203", "/?refresh=0&state=down,failing&node=node-04203", `data-node="node-04203"`},
	} {
		code, body, err := harness.Do(ctx, "GET", br.URL+target.path, auth, nil)
		if err != nil || code != 200 || !bytes.Contains(body, []byte(target.want)) {
			b.Fatalf("%s: %d %v, want 200 with %s:\n%.800s", target.path, code, err, target.want, body)
		}
		out, err := runBounded(ctx, wrk, "-t2", "-c"+strconv.Itoa(fleetWrkConns), "-d"+fleetWrkDuration.String(), "--latency", "--timeout", "5s",
			"-H", "Authorization: Bearer "+token, br.URL+target.path)
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		r, err := parseWrk(out)
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		if r.non2xx > 0 || r.errors > 0 {
			b.Fatalf("wrk %s: %d non-2xx, %d socket errors\n%s", target.path, r.non2xx, r.errors, out)
		}
		results = append(results, result{target.name, r})
	}
	rss, hwm := procStatusKB(b, br.PID(), "VmRSS"), procStatusKB(b, br.PID(), "VmHWM")
	b.StopTimer()

	worst := time.Duration(0)
	for _, r := range results {
		worst = max(worst, r.p99)
	}
	b.ReportMetric(ms(worst), "worst-p99-ms")
	b.ReportMetric(float64(hwm)/1024, "bridge-peak-RSS-MiB")
	b.ReportMetric(redisCPU*100, "redis-CPU-%")
	b.ReportMetric(float64(usedMem)/(1<<20), "redis-used-MiB")

	verdict := func(ok bool) string {
		if ok {
			return "meets goal"
		}
		return "MISSES goal"
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("fleet view at %d nodes × %d agents (%d cores, load average %s at the end; publishers, Redis, bridge and wrk share the cores):\n",
		fleetNodes, fleetAgentsPer, runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Printf("  Redis with %d nodes publishing every %s: %.0f snapshot writes/s (SADD + SET EX, %d B of JSON each), redis-server CPU %.1f%% of a core (%.1f µs/write), used_memory %.1f MiB\n",
		fleetNodes, fleetPublishEvery, writeRate, pub.size, redisCPU*100, redisCPU*1e6/max(writeRate, 1), float64(usedMem)/(1<<20))
	fmt.Printf("  cold: the bridge's first GET /api/v1/agents read every snapshot in %.0f ms\n", ms(cold))
	for _, r := range results {
		fmt.Printf("  %-48s wrk -c%d -d%s: %7.0f req/s  p50 %7.2f ms  p99 %7.2f ms\n", r.name, fleetWrkConns, fleetWrkDuration, r.rate, ms(r.p50), ms(r.p99))
	}
	fmt.Printf("  bridge RSS %.0f MiB now, %.0f MiB peak (VmHWM)\n", float64(rss)/1024, float64(hwm)/1024)
	fmt.Printf("  goals: p99 ≤ 300 ms %s (worst %.1f ms); bridge RSS ≤ 256 MiB %s\n",
		verdict(worst <= 300*time.Millisecond), ms(worst), verdict(hwm <= 256<<10))
	br.Stop(5 * time.Second)
}

// fleetPublishers simulate medic nodes writing their state snapshots.
type fleetPublishers struct {
	nodes []string
	// snap[i] is node i's snapshot, split around its "updated" value.
	before, after  [][]byte
	size           int // bytes of one snapshot
	down, failing  int // agents so, in every snapshot
	writes, errors atomic.Int64
}

func newFleetPublishers(n, perNode int) *fleetPublishers {
	p := &fleetPublishers{}
	yes, no := true, false
	const marker = "2000-01-01T00:00:00Z"
	for i := range n {
		node := fmt.Sprintf("node-%05d", i)
		st := exporter.NodeState{Node: node, Updated: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
		for j := range perNode {
			a := exporter.AgentState{Name: fmt.Sprintf("agent-%d", j), Supervised: true, Up: true, PID: 10000 + j, Detail: fmt.Sprintf("pid %d alive", 10000+j),
				ProbeOK: &yes, ProbeDetail: "HTTP 200", HeartbeatRegistered: true, HeartbeatAge: 1.2, HeartbeatTimeout: 15, Restarts: 1,
				Thresholds: &exporter.Thresholds{Memory: 0.8, CPU: 0.8, Disk: 0.99}}
			a.Usage.Memory, a.Usage.CPU, a.Usage.Disk, a.Usage.RSS = 0.21, 0.034, 0.47, 48<<20
			switch {
			case j == 0 && i%100 == 3: // 1% of nodes have an agent down
				a.Up, a.PID, a.Detail, a.ProbeOK = false, 0, "pid 10000 exited (exit status 1)", nil
				p.down++
			case j == 1 && i%50 == 7: // 2% one whose probe fails
				a.ProbeOK, a.ProbeDetail = &no, "HTTP 503"
				p.failing++
			}
			st.Agents = append(st.Agents, a)
		}
		data, _ := json.Marshal(st)
		k := bytes.Index(data, []byte(marker))
		p.nodes = append(p.nodes, node)
		p.before = append(p.before, data[:k])
		p.after = append(p.after, data[k+len(marker):])
		p.size = len(data)
	}
	return p
}

// write is one node's publish, as exporter.(*Node).publishState does it.
func (p *fleetPublishers) write(ctx context.Context, pipe redis.Pipeliner, i int, now time.Time) {
	ts := now.UTC().Format(time.RFC3339Nano)
	v := make([]byte, 0, len(p.before[i])+len(ts)+len(p.after[i]))
	v = append(append(append(v, p.before[i]...), ts...), p.after[i]...)
	pipe.SAdd(ctx, keys.Nodes("medic:"), p.nodes[i])
	pipe.Set(ctx, keys.NodeState("medic:", p.nodes[i]), v, exporter.DefaultStateTTL)
}

func (p *fleetPublishers) writeAll(ctx context.Context, c redis.UniversalClient) error {
	for lo := 0; lo < len(p.nodes); lo += 500 {
		pipe := c.Pipeline()
		for i := lo; i < min(lo+500, len(p.nodes)); i++ {
			p.write(ctx, pipe, i, time.Now())
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// run publishes every node once per every, spread evenly over the period,
// one pipeline (one round trip) per node as a real node sends, from 16
// connections.
func (p *fleetPublishers) run(ctx context.Context, c redis.UniversalClient, every time.Duration) {
	const workers = 16
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			mine := (len(p.nodes) + workers - 1 - w) / workers
			if mine == 0 {
				return
			}
			tick := time.NewTicker(every / time.Duration(mine))
			defer tick.Stop()
			for i := w; ; i += workers {
				if i >= len(p.nodes) {
					i = w
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				pipe := c.Pipeline()
				p.write(ctx, pipe, i, time.Now())
				if _, err := pipe.Exec(ctx); err != nil {
					if ctx.Err() == nil {
						p.errors.Add(1)
					}
					continue
				}
				p.writes.Add(1)
			}
		})
	}
	wg.Wait()
}

// redisInfo is one section of INFO as a map.
func redisInfo(b *testing.B, c redis.UniversalClient, section string) map[string]string {
	s, err := c.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatal(err)
	}
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// procStatusKB reads a "kB" field of /proc/PID/status (VmRSS, VmHWM).
func procStatusKB(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
