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
	b, err := os.ReadFile(procRoot + "/meminfo")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			total = v * 1024
		case "MemAvailable:":
			available = v * 1024
		}
	}
	if total == 0 {
		return 0, 0, errors.New("/proc/meminfo: no MemTotal")
	}
	return total, available, nil
}

// hostCPUTimes returns busy and total jiffies from the cpu line of /proc/stat.
func hostCPUTimes() (busy, total uint64, err error) {
	b, err := os.ReadFile(procRoot + "/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	for i, s := range f[1:] {
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user and nice.
		if i >= 8 {
			break
		}
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
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
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", nil, err
	}
	v1 = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1[c] = parts[2]
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
