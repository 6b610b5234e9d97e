package exporter

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/procfs"
)

// userHZ is the unit of the time fields of /proc/PID/stat. Linux fixes
// USER_HZ at 100 on every architecture medic runs on.
const userHZ = 100

var pageSize = uint64(os.Getpagesize())

// procRoot is /proc; every file medic reads under it goes through procFS,
// node_exporter's own /proc library.
const procRoot = "/proc"

var procFS, procFSErr = procfs.NewFS(procRoot)

// procStat is the part of /proc/PID/stat medic uses.
type procStat struct {
	PID       int
	State     byte
	PPID      int
	PGRP      int
	UTime     uint64 // clock ticks
	STime     uint64
	StartTime uint64 // clock ticks after boot (field 22)
	RSS       uint64 // bytes
}

// CPUSeconds is user plus system time.
func (s procStat) CPUSeconds() float64 { return float64(s.UTime+s.STime) / userHZ }

var errNoProcess = errors.New("no such process")

// readStat reads /proc/PID/stat. A missing process is errNoProcess.
func readStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, errNoProcess
	}
	if procFSErr != nil {
		return procStat{}, procFSErr
	}
	p, err := procFS.Proc(pid)
	if err != nil {
		return procStat{}, noProcess(err)
	}
	return statOf(p)
}

// statOf reads one process's stat through procfs.
func statOf(p procfs.Proc) (procStat, error) {
	st, err := p.Stat()
	if err != nil {
		return procStat{}, noProcess(err)
	}
	s := procStat{
		PID:       p.PID,
		PPID:      st.PPID,
		PGRP:      st.PGRP,
		UTime:     uint64(st.UTime),
		STime:     uint64(st.STime),
		StartTime: st.Starttime,
		RSS:       uint64(max(st.RSS, 0)) * pageSize,
	}
	if st.State != "" {
		s.State = st.State[0]
	}
	return s, nil
}

// noProcess maps the errors of a process that has gone to errNoProcess.
func noProcess(err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, errESRCH) {
		return errNoProcess
	}
	return err
}

// Identity names one process instance: a PID alone is not enough, because
// the kernel reuses PIDs; the start time (ticks after boot) is not reused
// for the same PID.
type Identity struct {
	PID       int
	StartTime uint64
}

// statFunc reads one process's stat: readStat, or a scrape's cached scan.
type statFunc func(pid int) (procStat, error)

// identityOf reads the identity of a live (non-zombie) process.
func identityOf(pid int) (Identity, error) { return identityWith(readStat, pid) }

func identityWith(stat statFunc, pid int) (Identity, error) {
	s, err := stat(pid)
	if err != nil {
		return Identity{}, err
	}
	if s.State == 'Z' || s.State == 'X' {
		return Identity{}, errNoProcess
	}
	return Identity{PID: pid, StartTime: s.StartTime}, nil
}

// aliveIdentity reports whether id still names a running process: same PID,
// same start time, not a zombie.
func aliveIdentity(id Identity) (bool, string) { return aliveIdentityWith(readStat, id) }

func aliveIdentityWith(stat statFunc, id Identity) (bool, string) {
	if id.PID <= 0 {
		return false, "no process"
	}
	now, err := identityWith(stat, id.PID)
	if err != nil {
		return false, fmt.Sprintf("pid %d gone", id.PID)
	}
	if now.StartTime != id.StartTime {
		return false, fmt.Sprintf("pid %d reused (start time %d, expected %d)", id.PID, now.StartTime, id.StartTime)
	}
	return true, fmt.Sprintf("pid %d alive", id.PID)
}

// bootTime is btime from /proc/stat, the wall clock time of boot in whole
// seconds (truncated, so a start time computed from it is never later than
// the real one).
func bootTime() (time.Time, error) {
	if procFSErr != nil {
		return time.Time{}, procFSErr
	}
	st, err := procFS.Stat()
	if err != nil {
		return time.Time{}, err
	}
	if st.BootTime == 0 {
		return time.Time{}, errors.New("/proc/stat: no btime")
	}
	return time.Unix(int64(st.BootTime), 0), nil
}

// startWallTime converts a start time in ticks to wall clock time.
func startWallTime(boot time.Time, ticks uint64) time.Time {
	return boot.Add(time.Duration(ticks) * time.Second / userHZ)
}

// procTable is one scan of every process's stat, for summing a process
// tree without one scan per agent.
type procTable struct {
	at       time.Time
	byPID    map[int]procStat
	children map[int][]int
	byPGRP   map[int][]int
}

func scanProcs(now time.Time) (*procTable, error) {
	if procFSErr != nil {
		return nil, procFSErr
	}
	procs, err := procFS.AllProcs()
	if err != nil {
		return nil, err
	}
	t := &procTable{
		at:       now,
		byPID:    make(map[int]procStat, len(procs)),
		children: make(map[int][]int, len(procs)),
		byPGRP:   make(map[int][]int),
	}
	for _, p := range procs {
		s, err := statOf(p)
		if err != nil || s.State == 'Z' || s.State == 'X' {
			continue
		}
		t.byPID[p.PID] = s
		t.children[s.PPID] = append(t.children[s.PPID], p.PID)
		t.byPGRP[s.PGRP] = append(t.byPGRP[s.PGRP], p.PID)
	}
	return t, nil
}

// stat looks pid up in the scan, and reads it fresh when the scan is older
// than the process.
func (t *procTable) stat(pid int) (procStat, error) {
	if s, ok := t.byPID[pid]; ok {
		return s, nil
	}
	return readStat(pid)
}

// treeUsage sums RSS and CPU time over the process, its descendants, and,
// when it leads a process group, every member of that group (a supervised
// agent's grandchildren can be reparented to init and still belong to it).
func (t *procTable) treeUsage(root int) (rss uint64, cpu float64, n int) {
	if _, ok := t.byPID[root]; !ok {
		return 0, 0, 0
	}
	seen := map[int]bool{}
	stack := []int{root}
	if s := t.byPID[root]; s.PGRP == root {
		stack = append(stack, t.byPGRP[root]...)
	}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		s, ok := t.byPID[pid]
		if !ok {
			continue
		}
		rss += s.RSS
		cpu += s.CPUSeconds()
		stack = append(stack, t.children[pid]...)
	}
	return rss, cpu, len(seen)
}

// treeUsageNow is treeUsage from a fresh scan.
func treeUsageNow(root int) (rss uint64, cpu float64, err error) {
	t, err := scanProcs(time.Now())
	if err != nil {
		return 0, 0, err
	}
	rss, cpu, n := t.treeUsage(root)
	if n == 0 {
		return 0, 0, errNoProcess
	}
	return rss, cpu, nil
}
