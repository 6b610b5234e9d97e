package exporter

import (
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

var errESRCH = syscall.ESRCH

const cgroupRoot = "/sys/fs/cgroup"

// memInfo returns MemTotal and MemAvailable in bytes.
func memInfo() (total, available uint64, err error) {
	if procFSErr != nil {
		return 0, 0, procFSErr
	}
	m, err := procFS.Meminfo()
	if err != nil {
		return 0, 0, err
	}
	if m.MemTotalBytes == nil || *m.MemTotalBytes == 0 {
		return 0, 0, errors.New("/proc/meminfo: no MemTotal")
	}
	total = *m.MemTotalBytes
	if m.MemAvailableBytes != nil {
		available = *m.MemAvailableBytes
	}
	return total, available, nil
}

// hostCPUTimes returns busy and total CPU seconds of the host from the cpu
// line of /proc/stat. Guest time is already counted in user and nice.
func hostCPUTimes() (busy, total float64, err error) {
	if procFSErr != nil {
		return 0, 0, procFSErr
	}
	st, err := procFS.Stat()
	if err != nil {
		return 0, 0, err
	}
	c := st.CPUTotal
	busy = c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
	return busy, busy + c.Idle + c.Iowait, nil
}

// diskUsedRatio is the used ratio of the filesystem holding dir, as df
// computes it: used / (used + available to unprivileged users).
func diskUsedRatio(dir string) (float64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	used := st.Blocks - st.Bfree
	denom := used + st.Bavail
	if denom == 0 {
		return 0, nil
	}
	return float64(used) / float64(denom), nil
}

// cgroupLimits are the limits of the cgroup a process runs in; zero means
// no limit.
type cgroupLimits struct {
	MemoryBytes uint64
	CPUs        float64
}

// cgroupPaths reads /proc/PID/cgroup: the v2 path ("0::/x") and the v1
// paths by controller.
func cgroupPaths(pid int) (v2 string, v1 map[string]string, err error) {
	if procFSErr != nil {
		return "", nil, procFSErr
	}
	p, err := procFS.Proc(pid)
	if err != nil {
		return "", nil, err
	}
	groups, err := p.Cgroups()
	if err != nil {
		return "", nil, err
	}
	v1 = map[string]string{}
	for _, g := range groups {
		if g.HierarchyID == 0 && len(g.Controllers) == 0 {
			v2 = g.Path
			continue
		}
		for _, c := range g.Controllers {
			v1[c] = g.Path
		}
	}
	return v2, v1, nil
}

func readUintFile(p string) (uint64, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}

// cgroupLimitsOf finds the effective memory and CPU limits of the process's
// cgroup: the smallest limit of the cgroup and its ancestors. memTotal
// bounds what counts as a limit (v1 reports "unlimited" as a huge number).
func cgroupLimitsOf(pid int, memTotal uint64) cgroupLimits {
	v2, v1, err := cgroupPaths(pid)
	if err != nil {
		return cgroupLimits{}
	}
	var lim cgroupLimits
	setMem := func(v uint64) {
		if v > 0 && v < memTotal && (lim.MemoryBytes == 0 || v < lim.MemoryBytes) {
			lim.MemoryBytes = v
		}
	}
	setCPU := func(c float64) {
		if c > 0 && (lim.CPUs == 0 || c < lim.CPUs) {
			lim.CPUs = c
		}
	}
	if v2 != "" {
		for dir := v2; ; dir = path.Dir(dir) {
			base := cgroupRoot + dir
			if b, err := os.ReadFile(base + "/memory.max"); err == nil {
				if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
					setMem(v)
				}
			}
			if b, err := os.ReadFile(base + "/cpu.max"); err == nil {
				f := strings.Fields(string(b))
				if len(f) == 2 && f[0] != "max" {
					q, err1 := strconv.ParseFloat(f[0], 64)
					p, err2 := strconv.ParseFloat(f[1], 64)
					if err1 == nil && err2 == nil && p > 0 {
						setCPU(q / p)
					}
				}
			}
			if dir == "/" || dir == "." || dir == "" {
				break
			}
		}
	}
	if p, ok := v1["memory"]; ok {
		for dir := p; ; dir = path.Dir(dir) {
			if v, ok := readUintFile(cgroupRoot + "/memory" + dir + "/memory.limit_in_bytes"); ok {
				setMem(v)
			}
			if dir == "/" || dir == "." || dir == "" {
				break
			}
		}
	}
	if p, ok := v1["cpu"]; ok {
		for dir := p; ; dir = path.Dir(dir) {
			base := cgroupRoot + "/cpu" + dir
			qb, err1 := os.ReadFile(base + "/cpu.cfs_quota_us")
			pb, err2 := os.ReadFile(base + "/cpu.cfs_period_us")
			if err1 == nil && err2 == nil {
				q, _ := strconv.ParseFloat(strings.TrimSpace(string(qb)), 64)
				per, _ := strconv.ParseFloat(strings.TrimSpace(string(pb)), 64)
				if q > 0 && per > 0 {
					setCPU(q / per)
				}
			}
			if dir == "/" || dir == "." || dir == "" {
				break
			}
		}
	}
	return lim
}

// numCPU is the number of cores CPU ratios are taken over when no quota is
// set.
func numCPU() float64 { return float64(runtime.NumCPU()) }
