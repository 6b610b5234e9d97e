package exporter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
)

func usageOf(t *testing.T, n *started, name string) hcl.Usage {
	t.Helper()
	u, err := n.Usage(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func rssOf(t *testing.T, pid int) uint64 {
	t.Helper()
	rss, _, err := treeUsageNow(pid)
	if err != nil {
		t.Fatal(err)
	}
	return rss
}

func TestUsageMemoryRisesWithLeak(t *testing.T) {
	def, addr := testAgent(t, "leaky")
	n := startNode(t, Options{Config: configOf(def), CPUWindow: 50 * time.Millisecond}, nil)
	id := n.waitServing(t, "leaky")
	total, _, _ := memInfo()

	before := usageOf(t, n, "leaky")
	if code, _ := call(t, "POST", "http://"+addr+"/leak?mb=256", ""); code != 200 {
		t.Fatal("/leak failed")
	}
	after := usageOf(t, n, "leaky")
	rss := rssOf(t, id.PID)
	grew := (after.Memory - before.Memory) * float64(total)
	t.Logf("memory ratio %.4f → %.4f (+%.0f MiB), rss %d MiB, MemTotal %d MiB", before.Memory, after.Memory, grew/(1<<20), rss>>20, total>>20)
	if grew < 240<<20 {
		t.Errorf("memory grew by %.0f MiB, want ≥ 240 MiB", grew/(1<<20))
	}
	if want := float64(rss) / float64(total); math.Abs(after.Memory-want) > 4<<20/float64(total) {
		t.Errorf("memory ratio %.5f, want rss/MemTotal = %.5f", after.Memory, want)
	}
	if after.HostMemory <= 0 || after.HostMemory >= 1 {
		t.Errorf("host memory ratio %v", after.HostMemory)
	}
}

// RSS and CPU are summed over the agent's process group.
func TestUsageSumsProcessGroup(t *testing.T) {
	def, addr := testAgent(t, "family")
	n := startNode(t, Options{Config: configOf(def)}, nil)
	id := n.waitServing(t, "family")
	_, out := call(t, "POST", "http://"+addr+"/spawn?sleep=100", "")
	kid, _ := strconv.Atoi(strings.TrimSpace(out))
	table, err := scanProcs(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rss, _, count := table.treeUsage(id.PID)
	if count != 2 {
		t.Fatalf("tree of %d has %d processes, want 2", id.PID, count)
	}
	if rss != table.byPID[id.PID].RSS+table.byPID[kid].RSS {
		t.Fatalf("tree rss %d is not the sum of agent and child", rss)
	}
}

// cpuRateAround measures, independently of Usage, how many cores the
// process tree used while f ran.
func cpuRateAround(t *testing.T, pid int, f func()) float64 {
	t.Helper()
	_, c0, err := treeUsageNow(pid)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	f()
	_, c1, err := treeUsageNow(pid)
	if err != nil {
		t.Fatal(err)
	}
	return (c1 - c0) / time.Since(t0).Seconds()
}

// closeTo: within 35% (clock-tick resolution and a window that is a part
// of the measured one) or 0.05 absolute.
func closeTo(got, want float64) bool {
	return math.Abs(got-want) <= math.Max(0.05, 0.35*want)
}

// The machine is shared, so the spinner's share of the cores is not known
// in advance; Usage must agree with an independent measurement of it.
func TestUsageCPUWhileSpinning(t *testing.T) {
	def, addr := testAgent(t, "spinner")
	n := startNode(t, Options{Config: configOf(def), CPUWindow: 500 * time.Millisecond}, nil)
	id := n.waitServing(t, "spinner")
	idle := usageOf(t, n, "spinner")
	call(t, "POST", "http://"+addr+"/spin?n=2", "")
	time.Sleep(100 * time.Millisecond)
	var busy hcl.Usage
	cores := cpuRateAround(t, id.PID, func() { busy = usageOf(t, n, "spinner") })
	want := cores / numCPU()
	t.Logf("cpu idle %.3f; spinning %.3f (measured %.3f cores of %v = %.3f); host %.3f", idle.CPU, busy.CPU, cores, numCPU(), want, busy.HostCPU)
	if idle.CPU > 0.1 {
		t.Errorf("idle agent uses %.2f of the CPU", idle.CPU)
	}
	if busy.CPU < 0.05 || busy.CPU < 5*idle.CPU {
		t.Errorf("spinning agent uses %.3f of the CPU (idle %.3f)", busy.CPU, idle.CPU)
	}
	if !closeTo(busy.CPU, want) {
		t.Errorf("usage.cpu %.3f, measured %.3f", busy.CPU, want)
	}
	if busy.HostCPU < busy.CPU*0.8 {
		t.Errorf("host CPU %.2f below the agent's %.2f", busy.HostCPU, busy.CPU)
	}
}

func TestUsageDiskIsStatfsRatioOfWorkdir(t *testing.T) {
	def, addr := testAgent(t, "filler")
	n := startNode(t, Options{Config: configOf(def), CPUWindow: 10 * time.Millisecond}, nil)
	n.waitServing(t, "filler")
	code, out := call(t, "POST", "http://"+addr+"/fill?mb=32", "")
	if code != 200 {
		t.Fatalf("/fill: %d %s", code, out)
	}
	path := strings.TrimSpace(out)
	if filepath.Dir(path) != def.Workdir {
		t.Fatalf("filled %s, not in workdir %s", path, def.Workdir)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 32<<20 {
		t.Fatalf("fill file: %v %v", fi, err)
	}
	u := usageOf(t, n, "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(def.Workdir, &st); err != nil {
		t.Fatal(err)
	}
	used := st.Blocks - st.Bfree
	want := float64(used) / float64(used+st.Bavail)
	// Other processes write to the same filesystem meanwhile: allow 0.1%.
	if math.Abs(u.Disk-want) > 0.001 {
		t.Errorf("disk ratio %.5f, statfs says %.5f", u.Disk, want)
	}
	t.Logf("disk ratio of %s: %.5f (statfs %.5f)", def.Workdir, u.Disk, want)
}

// cgroupV1Child makes a child of this process's v1 cgroup for controller
// and moves nothing into it yet.
func cgroupV1Child(t *testing.T, controller string) string {
	t.Helper()
	_, v1, err := cgroupPaths(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	parent, ok := v1[controller]
	if !ok {
		t.Skipf("no cgroup v1 %s controller here (cgroup v2 hosts are covered by cgroupLimitsOf's v2 branch)", controller)
	}
	dir := filepath.Join(cgroupRoot, controller, parent, fmt.Sprintf("medic-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
			t.Skipf("cannot create a cgroup: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

func TestUsageRatiosUseCgroupLimits(t *testing.T) {
	memDir := cgroupV1Child(t, "memory")
	cpuDir := cgroupV1Child(t, "cpu")
	const limit = 1 << 30
	if err := os.WriteFile(filepath.Join(memDir, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cpuDir, "cpu.cfs_quota_us"), []byte("50000"), 0o644); err != nil {
		t.Fatal(err)
	}
	def, addr := testAgent(t, "contained")
	n := startNode(t, Options{Config: configOf(def), CPUWindow: 400 * time.Millisecond}, nil)
	id := n.waitServing(t, "contained")
	for _, dir := range []string{memDir, cpuDir} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(id.PID)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if lim := cgroupLimitsOf(id.PID, math.MaxUint64); lim.MemoryBytes != limit || lim.CPUs != 0.5 {
		t.Fatalf("limits = %+v, want 1 GiB and 0.5 CPU", lim)
	}
	call(t, "POST", "http://"+addr+"/leak?mb=128", "")
	call(t, "POST", "http://"+addr+"/spin?n=2", "")
	time.Sleep(100 * time.Millisecond)
	var u hcl.Usage
	cores := cpuRateAround(t, id.PID, func() { u = usageOf(t, n, "contained") })
	rss := rssOf(t, id.PID)
	t.Logf("memory %.4f (rss %d MiB of 1 GiB), cpu %.3f of a 0.5-core quota (measured %.3f cores)", u.Memory, rss>>20, u.CPU, cores)
	if want := float64(rss) / limit; math.Abs(u.Memory-want) > 0.01 || u.Memory < 0.12 {
		t.Errorf("memory ratio %.4f, want rss/limit = %.4f", u.Memory, want)
	}
	// The ratio is over the quota, not over the machine's cores, and the
	// quota caps it.
	if !closeTo(u.CPU, cores/0.5) || u.CPU > 1.2 {
		t.Errorf("cpu ratio %.3f of the quota, measured %.3f cores of 0.5", u.CPU, cores)
	}
}
