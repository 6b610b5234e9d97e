package exporter

import (
	"context"
	"time"

	"github.com/medicops/medic/hcl"
)

// agentView is what a scrape (and the Redis state snapshot) shows of one
// agent. The /proc part is cached for SampleTTL so a scrape of many agents
// stays cheap; probes never run at scrape time.
type agentView struct {
	Name   string
	Up     bool
	PID    int
	Detail string

	HasProc    bool
	RSS        uint64
	CPUSeconds float64
	MemRatio   float64
	CPURatio   float64 // between the last two samples; for the state page

	HasDisk   bool
	DiskRatio float64

	Probe    probeResult
	HB       heartbeat
	HBAge    time.Duration
	Restarts uint64

	at  time.Time
	gen uint64 // the agent's gen when sampled
}

// sampleMemo shares per-scrape work between agents: one statfs per
// directory, one cgroup lookup per process.
type sampleMemo struct {
	disk   map[string]float64
	cgroup map[int]cgroupLimits
}

// views returns every agent's view, refreshing the stale ones.
func (n *Node) views() []agentView {
	agents := n.list()
	out := make([]agentView, 0, len(agents))
	memo := &sampleMemo{disk: map[string]float64{}, cgroup: map[int]cgroupLimits{}}
	now := time.Now()
	var table *procTable
	for _, a := range agents {
		a.mu.Lock()
		v, gen := a.view, a.gen
		a.mu.Unlock()
		if v.at.IsZero() || now.Sub(v.at) >= n.opts.SampleTTL || v.gen != gen {
			if table == nil {
				table = n.procs()
			}
			v = a.refreshView(table, memo, v, now, gen)
		}
		a.mu.Lock()
		v.Probe = a.probe
		v.HB = a.hb
		a.mu.Unlock()
		if v.HB.registered {
			v.HBAge = max(0, n.now().Sub(v.HB.last))
		}
		v.Restarts = a.restarts.Load()
		out = append(out, v)
	}
	return out
}

func (a *agent) refreshView(table *procTable, memo *sampleMemo, prev agentView, now time.Time, gen uint64) agentView {
	n := a.n
	v := agentView{Name: a.name, at: now, gen: gen}
	up, detail, id := a.aliveWith(table.stat)
	v.Up, v.Detail = up, detail
	if up {
		v.PID = id.PID
		rss, cpu, count := table.treeUsage(id.PID)
		if count == 0 {
			// Started after the shared scan: the process alone will do.
			if s, err := readStat(id.PID); err == nil {
				rss, cpu, count = s.RSS, s.CPUSeconds(), 1
			}
		}
		if count > 0 {
			v.HasProc, v.RSS, v.CPUSeconds = true, rss, cpu
			lim, ok := memo.cgroup[id.PID]
			if !ok {
				lim = cgroupLimitsOf(id.PID, n.memTotal)
				memo.cgroup[id.PID] = lim
			}
			denom := float64(n.memTotal)
			if lim.MemoryBytes > 0 {
				denom = float64(lim.MemoryBytes)
			}
			v.MemRatio = float64(rss) / denom
			if prev.HasProc && prev.PID == v.PID && now.After(prev.at) {
				cores := numCPU()
				if lim.CPUs > 0 {
					cores = lim.CPUs
				}
				v.CPURatio = max(0, cpu-prev.CPUSeconds) / now.Sub(prev.at).Seconds() / cores
			}
		}
	}
	dir := a.workdir()
	if r, ok := memo.disk[dir]; ok {
		v.HasDisk, v.DiskRatio = true, r
	} else if r, err := diskUsedRatio(dir); err == nil {
		memo.disk[dir] = r
		v.HasDisk, v.DiskRatio = true, r
	}
	a.mu.Lock()
	if a.gen == gen {
		a.view = v
	}
	a.mu.Unlock()
	return v
}

// sampleUsage measures the agent's usage now, CPU over window.
func (a *agent) sampleUsage(ctx context.Context, window time.Duration) (hcl.Usage, error) {
	var u hcl.Usage
	total, avail, err := memInfo()
	if err != nil {
		return u, err
	}
	u.HostMemory = float64(total-min(avail, total)) / float64(total)
	if r, err := diskUsedRatio(a.workdir()); err == nil {
		u.Disk = r
	}
	alive, _, id := a.alive()

	// A baseline taken just before the heartbeat went overdue already
	// opens the window, so diagnosing a hung agent does not wait for it.
	a.mu.Lock()
	base := a.cpuBase
	a.cpuBase = cpuBaseline{}
	a.mu.Unlock()
	if base.at.IsZero() || base.pid != id.PID || time.Since(base.at) > 4*window {
		base = takeBaseline(id.PID, alive)
	}
	if wait := window - time.Since(base.at); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return u, ctx.Err()
		case <-t.C:
		}
	}
	busy0, tot0, cpu0, start := base.hostBusy, base.hostTotal, base.cpu, base.at
	busy1, tot1, _ := hostCPUTimes()
	elapsed := time.Since(start).Seconds()
	if tot1 > tot0 {
		u.HostCPU = (busy1 - busy0) / (tot1 - tot0)
	}
	if !alive {
		return u, nil
	}
	table, err := scanProcs(time.Now())
	if err != nil {
		return u, err
	}
	rss, cpu1, count := table.treeUsage(id.PID)
	if count == 0 {
		return u, nil // exited during the window
	}
	lim := cgroupLimitsOf(id.PID, total)
	memDenom := float64(total)
	if lim.MemoryBytes > 0 {
		memDenom = float64(lim.MemoryBytes)
	}
	u.Memory = float64(rss) / memDenom
	cores := numCPU()
	if lim.CPUs > 0 {
		cores = lim.CPUs
	}
	if elapsed > 0 {
		u.CPU = max(0, cpu1-cpu0) / elapsed / cores
	}
	return u, nil
}

// cpuBaseline is the start of a CPU measurement window.
type cpuBaseline struct {
	at                  time.Time
	pid                 int
	cpu                 float64
	hostBusy, hostTotal float64
}

func takeBaseline(pid int, alive bool) cpuBaseline {
	b := cpuBaseline{pid: pid}
	b.hostBusy, b.hostTotal, _ = hostCPUTimes()
	if alive {
		if t, err := scanProcs(time.Now()); err == nil {
			_, b.cpu, _ = t.treeUsage(pid)
		}
	}
	b.at = time.Now()
	return b
}

// preSample opens a CPU window for an agent whose heartbeat is about to go
// overdue (within one window of its timeout), once per heartbeat period.
func (a *agent) preSample(now time.Time, window time.Duration) {
	a.mu.Lock()
	hb := a.hb
	if !hb.registered || hb.timeout <= 0 || hb.episode || a.cpuBaseFor.Equal(hb.last) || now.Sub(hb.last) < hb.timeout-window {
		a.mu.Unlock()
		return
	}
	a.cpuBaseFor = hb.last
	a.mu.Unlock()
	alive, _, id := a.alive()
	if !alive {
		return
	}
	b := takeBaseline(id.PID, true)
	a.mu.Lock()
	a.cpuBase = b
	a.mu.Unlock()
}
