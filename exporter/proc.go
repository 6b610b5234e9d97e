package exporter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the time fields of /proc/PID/stat. Linux fixes
// USER_HZ at 100 on every architecture medic runs on.
const userHZ = 100

var pageSize = uint64(os.Getpagesize())

// procRoot is /proc; tests never change it, but keeping it in one place
// documents every file medic reads.
const procRoot = "/proc"

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
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errESRCH) {
			return procStat{}, errNoProcess
		}
		return procStat{}, err
	}
	return parseStat(pid, b)
}

// parseStat parses a stat line. The command name is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the last
// ')'.
func parseStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("pid %d: short stat (%d fields)", pid, len(f))
	}
	num := func(n int) uint64 {
		v, _ := strconv.ParseUint(f[n-3], 10, 64)
		return v
	}
	s := procStat{
		PID:       pid,
		State:     f[0][0],
		UTime:     num(14),
		STime:     num(15),
		StartTime: num(22),
		RSS:       num(24) * pageSize,
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	s.PPID, s.PGRP = ppid, pgrp
	return s, nil
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
	b, err := os.ReadFile(procRoot + "/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat: no btime")
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
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	t := &procTable{
		at:       now,
		byPID:    make(map[int]procStat, len(names)),
		children: make(map[int][]int, len(names)),
		byPGRP:   make(map[int][]int),
	}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		s, err := readStat(pid)
		if err != nil || s.State == 'Z' || s.State == 'X' {
			continue
		}
		t.byPID[pid] = s
		t.children[s.PPID] = append(t.children[s.PPID], pid)
		t.byPGRP[s.PGRP] = append(t.byPGRP[s.PGRP], pid)
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
