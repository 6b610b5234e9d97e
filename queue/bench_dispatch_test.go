package queue

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/queue/devicetest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkDispatchThroughput is issue #5's headline figure, measured as
// deployed: two real `medic agent` processes (bin/medic; the active one and
// a standby) against a real redis-server with `appendonly yes,
// appendfsync always`, delivering to 10 loopback devices (a strict
// devicetest server in this process). The benchmark publishes 50,000
// configs of a few hundred bytes through the publish script (the path the
// bridge's POST .../configs and `medic publish` take; pipelined, as a
// platform publishing in bulk would) while the agent delivers, and measures
// end-to-end configs/s until every one is delivered and acknowledged in
// Redis. It prints a figure only after checking that every device applied
// seq 1..k exactly once, in order, with the published payload, and that the
// pool holds nothing undelivered. redis-benchmark's XADD rate against the
// same server (same AOF setting) is printed next to it, with the ratio.
//
// MEDIC_BENCH_AGENT_CPUPROFILE=FILE writes a CPU profile of the active
// agent process over the run (through its --web.enable-pprof).
func BenchmarkDispatchThroughput(b *testing.B) {
	const total = 50000
	const devices = 10
	const producers, batch = 2, 100
	bin := medicBinary(b)
	profile := os.Getenv("MEDIC_BENCH_AGENT_CPUPROFILE")
	for i := 0; i < b.N; i++ {
		srv := redistest.Start(b, redistest.Options{AOF: true})
		client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		b.Cleanup(func() { client.Close() })
		h := newHarness(b, client, "", fmt.Sprintf("bench%d", i))
		var pprofAddr string
		var active *proc
		for _, id := range []string{"a1", "a2"} {
			argv := []string{bin, "agent", "--redis.url=" + srv.URL(), "--pool=" + h.pool, "--agent.id=" + id,
				"--agent.host=bench", "--device.url=" + h.dev.URL() + "/devices/${device}/config", "--log.level=warn"}
			if id == "a1" && profile != "" {
				pprofAddr = testport.Addr(b)
				argv = append(argv, "--web.listen-address="+pprofAddr, "--web.enable-pprof")
			}
			p := startProc(b, argv...)
			if id == "a1" {
				active = p
			}
		}
		waitFor(b, 10*time.Second, "both agents registered", func() bool { return len(h.status().Agents) == 2 })

		published := make(map[string][]string, devices)
		var pubMu sync.Mutex
		var profDone chan error
		if profile != "" {
			profDone = make(chan error, 1)
			go func() { profDone <- fetchProfile(pprofAddr, profile, 8) }()
		}
		agentCPU0, redisCPU0, selfCPU0 := procCPU(active.cmd.Process.Pid), redisCPU(client), procCPU(os.Getpid())
		start := time.Now()
		publishConcurrently(b, h, total, producers, batch, func(k int64) Config {
			dev := "dev" + strconv.Itoa(int(k%devices))
			return Config{Device: dev, Payload: benchPayload(dev, k)}
		}, func(cs []Config, res []Published) {
			pubMu.Lock()
			defer pubMu.Unlock()
			for j, r := range res {
				l := published[cs[j].Device]
				for int64(len(l)) < r.Seq {
					l = append(l, "")
				}
				l[r.Seq-1] = string(cs[j].Payload)
				published[cs[j].Device] = l
			}
		})
		publishedIn := time.Since(start)
		var acked int64
		waitFor(b, 120*time.Second, "all acknowledged", func() bool { acked = ackedTotal(client, h.keys); return acked >= total })
		elapsed := time.Since(start)
		rate := float64(total) / elapsed.Seconds()
		agentCPU, redisCPUUsed, selfCPU := procCPU(active.cmd.Process.Pid)-agentCPU0, redisCPU(client)-redisCPU0, procCPU(os.Getpid())-selfCPU0

		// No figure from a broken run.
		if acked != total {
			b.Fatalf("acknowledged %d, want %d", acked, total)
		}
		if bad := h.dev.Check(published); len(bad) > 0 {
			if len(bad) > 20 {
				bad = append(bad[:20], fmt.Sprintf("... and %d more", len(bad)-20))
			}
			b.Fatalf("device guarantees violated:\n%s", strings.Join(bad, "\n"))
		}
		for d := 0; d < devices; d++ {
			dev := "dev" + strconv.Itoa(d)
			if got, want := h.dev.Applied(dev), int64(len(published[dev])); got != want || want != total/devices {
				b.Fatalf("%s applied %d of %d published (want %d)", dev, got, want, total/devices)
			}
		}
		st := h.status()
		if st.Agent != "a1" || st.Backlog != 0 || st.Buffer != 0 {
			b.Fatalf("pool after the run: %+v; want a1 active with nothing pending", st)
		}
		others := 0
		for _, d := range h.dev.Devices() {
			for _, ev := range h.dev.History(d) {
				if ev.Outcome != devicetest.Applied {
					others++
				}
			}
		}
		if profDone != nil {
			if err := <-profDone; err != nil {
				b.Logf("agent CPU profile: %v", err)
			} else {
				fmt.Printf("dispatch: CPU profile of the active agent over the run written to %s\n", profile)
			}
		}

		xadd := redisBenchmarkXADD(b, srv)
		b.ReportMetric(rate, "delivered/s")
		b.ReportMetric(xadd, "xadd/s")
		b.ReportMetric(rate/xadd, "ratio")
		fmt.Printf("dispatch: %d configs (%d B each on average) to %d devices through `medic agent` processes, redis AOF always: delivered+acked in %s: %.0f configs/s (goal >= 10000); order and exactly-once checked on every device, %d non-applied requests; publishing alone %s (%.0f/s)\n",
			total, avgLen(published), devices, elapsed.Round(time.Millisecond), rate, others,
			publishedIn.Round(time.Millisecond), float64(total)/publishedIn.Seconds())
		fmt.Printf("dispatch: CPU over the run: active agent %s, redis-server %s, benchmark process (producers + devices) %s, in %s of wall clock on %d CPUs\n",
			agentCPU.Round(time.Millisecond), redisCPUUsed.Round(time.Millisecond), selfCPU.Round(time.Millisecond), elapsed.Round(time.Millisecond), runtime.NumCPU())
		fmt.Printf("dispatch: redis-benchmark XADD on the same server (AOF always): %.0f/s; end-to-end / XADD = %.3f (load average %s on %d CPUs)\n",
			xadd, rate/xadd, loadavg(), runtime.NumCPU())
	}
}

// benchPayload is a device config of a few hundred bytes, distinct per
// config so that the payload check catches a mix-up.
func benchPayload(dev string, k int64) []byte {
	return fmt.Appendf(nil, `{"device":%q,"change":%d,"hostname":"%s.rack%d.example","vlans":[{"id":%d,"name":"tenant-%d"},{"id":200,"name":"storage"}],`+
		`"interfaces":[{"name":"eth1","mode":"trunk","allowed":[%d,200],"mtu":9000},{"name":"eth2","mode":"access","vlan":200,"description":"storage uplink"}],`+
		`"acl":["permit tcp any any eq 443","permit tcp any any eq 22","deny ip any any log"],"ntp":["10.0.0.1","10.0.0.2"]}`,
		dev, k, dev, k%40, 100+k%3000, k%3000, 100+k%3000)
}

func avgLen(published map[string][]string) int {
	n, size := 0, 0
	for _, l := range published {
		for _, p := range l {
			n++
			size += len(p)
		}
	}
	if n == 0 {
		return 0
	}
	return size / n
}

// procCPU is the user+system CPU time a process has used so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ is 100 on Linux
}

// redisCPU is the CPU time the server reports having used (INFO cpu).
func redisCPU(c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// fetchProfile takes a CPU profile of seconds from a --web.enable-pprof
// listener.
func fetchProfile(addr, file string, seconds int) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
