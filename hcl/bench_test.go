package hcl

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/medicops/medic/alert"
)

// estateSources generates, in memory, `agents` agents in files of 1000 and
// `runbooks` runbooks shaped like the library's agent-recovery (three
// causes, verify, escalate, budget), plus one pool per 100 agents.
func estateSources(agents, runbooks int) []Source {
	var srcs []Source
	var b strings.Builder
	flush := func(name string) {
		srcs = append(srcs, Source{Name: name, Bytes: []byte(b.String())})
		b.Reset()
	}
	for i := 0; i < agents; i++ {
		fmt.Fprintf(&b, `agent "agent-%d" {
  node    = "node-%d"
  command = ["/opt/agent/bin/agent", "--port", "%d"]
  workdir = "/var/lib/agent-%d"
  env     = { LOG_LEVEL = "info" }

  probe "http" {
    url     = "http://127.0.0.1:%d/healthz"
    timeout = "2s"
  }

  thresholds {
    memory = 0.85
  }
}

`, i, i%500, 10000+i%50000, i, 10000+i%50000)
		if (i+1)%1000 == 0 || i == agents-1 {
			flush(fmt.Sprintf("agents-%03d.hcl", i/1000))
		}
	}
	for p := 0; p*100 < agents; p++ {
		fmt.Fprintf(&b, "pool \"pool-%d\" {\n  agents     = [\"agent-%d\", \"agent-%d\"]\n  device_url = \"http://${device}.pool-%d.example/api\"\n}\n\n", p, p*100, p*100+1, p)
	}
	flush("pools.hcl")
	for i := 0; i < runbooks; i++ {
		fmt.Fprintf(&b, `runbook "rb-%d" {
  match {
    alertname = "Alert%d"
  }
  matchers = ["severity=~\"critical|page\""]

  cause "memory" {
    when   = usage.memory > agent.thresholds.memory
    repair = ["/opt/medic/repair/memory.sh"]
  }

  cause "cpu" {
    when   = usage.cpu > agent.thresholds.cpu && usage.host.cpu > 0.5
    repair = ["/opt/medic/repair/cpu.sh"]
  }

  cause "disk" {
    when    = usage.disk > agent.thresholds.disk
    repair  = ["/opt/medic/repair/disk.sh", "--path", "/var"]
    timeout = "1m"
  }

  verify {
    attempts = 3
    interval = "2s"
  }

  escalate {
    webhook = "https://oncall.example/hooks/medic"
  }

  budget {
    restarts = 3
    window   = "1h"
  }
}

`, i, i)
	}
	flush("runbooks.hcl")
	return srcs
}

// BenchmarkLoad1000Runbooks10000Agents: the goal is ≤ 1 s per load.
// Every load is cold: the decode cache is emptied before each one (its
// figure is BenchmarkReloadUnchanged's).
func BenchmarkLoad1000Runbooks10000Agents(b *testing.B) {
	srcs := estateSources(10000, 1000)
	size := 0
	for _, s := range srcs {
		size += len(s.Bytes)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpuStart := time.Now(), cpuTime()
	var reset time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		resetCache()
		reset += time.Since(t0)
		cfg, diags := LoadSources(srcs)
		if diags.HasErrors() || len(cfg.Agents) != 10000 || len(cfg.Runbooks) != 1000 {
			b.Fatalf("load: %v", diags)
		}
	}
	perOp := (time.Since(start) - reset) / time.Duration(b.N)
	cpuPerOp := (cpuTime() - cpuStart) / time.Duration(b.N)
	b.StopTimer()
	// The floor: what hclsyntax alone spends parsing the same bytes, so the
	// figure can be read on a busy machine.
	parseStart := cpuTime()
	for _, s := range srcs {
		hclsyntax.ParseConfig(s.Bytes, s.Name, hcl2.InitialPos)
	}
	parseCPU := cpuTime() - parseStart
	b.ReportMetric(perOp.Seconds(), "s/load")
	b.ReportMetric(cpuPerOp.Seconds(), "cpu-s/load")
	b.ReportMetric(parseCPU.Seconds(), "cpu-s/parse-only")
	b.Logf("load of 1000 runbooks + 10000 agents (%.1f MiB of HCL): %v per load, %v of CPU over %d cores, of which hclsyntax parsing alone needs %v (goal ≤ 1s; load average now %s)",
		float64(size)/(1<<20), perOp.Round(time.Millisecond), cpuPerOp.Round(time.Millisecond), runtime.GOMAXPROCS(0), parseCPU.Round(time.Millisecond), loadAverage())
}

// BenchmarkReloadUnchanged is a reload (SIGHUP, POST /-/reload) of the
// same estate when no file changed: every file comes from the decode
// cache, so the cost is hashing the bytes, merging and cross-checking.
func BenchmarkReloadUnchanged(b *testing.B) {
	srcs := estateSources(10000, 1000)
	resetCache()
	if _, diags := LoadSources(srcs); diags.HasErrors() {
		b.Fatal(diags)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start, cpuStart := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		cfg, diags := LoadSources(srcs)
		if diags.HasErrors() || len(cfg.Agents) != 10000 || len(cfg.Runbooks) != 1000 {
			b.Fatalf("load: %v", diags)
		}
	}
	perOp := time.Since(start) / time.Duration(b.N)
	cpuPerOp := (cpuTime() - cpuStart) / time.Duration(b.N)
	b.ReportMetric(perOp.Seconds(), "s/reload")
	b.Logf("reload of 1000 runbooks + 10000 agents, no file changed: %v per reload, %v of CPU (load average now %s)",
		perOp.Round(100*time.Microsecond), cpuPerOp.Round(100*time.Microsecond), loadAverage())
}

// BenchmarkMatchAndEval matches an alert among 1000 runbooks (the last one,
// the worst case, with the reasons for the 999 skipped ones), resolves its
// agent and evaluates every cause. The goal is ≤ 50 µs. Each
// iteration repeats the work `inner` times so that `-benchtime=1x` (make
// bench) still measures a warm average rather than one cold call.
func BenchmarkMatchAndEval(b *testing.B) {
	cfg, diags := LoadSources(estateSources(10000, 1000))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	alert := alert.Alert{
		Labels:   map[string]string{"alertname": "Alert999", "agent": "agent-4242", "severity": "critical", "node": "node-242", "instance": "node-242:9105"},
		Status:   "firing",
		StartsAt: time.Now(),
	}
	usage := Usage{Memory: 0.9, CPU: 0.5, Disk: 0.2, HostCPU: 0.7}
	const inner = 1000
	b.ReportAllocs()
	b.ResetTimer()
	start, cpuStart := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		for j := 0; j < inner; j++ {
			rb, skipped := cfg.Match(alert)
			if rb == nil || rb.Name != "rb-999" || len(skipped) != 999 {
				b.Fatalf("matched %v after %d skipped", rb, len(skipped))
			}
			name, err := rb.TargetAgent(alert)
			if err != nil {
				b.Fatal(err)
			}
			ctx := EvalContext(alert, cfg.Agent(name), usage)
			held := 0
			for _, c := range rb.Causes {
				ok, diags := c.Eval(ctx)
				if diags.HasErrors() {
					b.Fatal(diags)
				}
				if ok {
					held++
				}
			}
			if held != 1 {
				b.Fatalf("%d causes held, want 1 (memory)", held)
			}
		}
	}
	perOp := time.Since(start) / time.Duration(b.N*inner)
	cpuPerOp := (cpuTime() - cpuStart) / time.Duration(b.N*inner)
	b.ReportMetric(float64(perOp.Nanoseconds())/1000, "µs/match+eval")
	b.ReportMetric(float64(cpuPerOp.Nanoseconds())/1000, "cpu-µs/match+eval")
	b.Logf("match among 1000 runbooks + evaluate 3 causes: %v per alert, %v of CPU (goal ≤ 50µs; load average now %s)", perOp, cpuPerOp, loadAverage())
}

// cpuTime is the CPU time this process has used. On a shared machine the
// wall-clock figure includes time spent waiting for a core; the CPU figure
// is what the work itself costs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage reports the 1-minute load average, to read the figures by.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}
