package exporter

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/procsig"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	root := t.TempDir()
	stat := func(pid, line string) procfs.Proc {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		fs, err := procfs.NewFS(root)
		if err != nil {
			t.Fatal(err)
		}
		p, err := fs.Proc(mustAtoi(t, pid))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	line := "4242 (evil) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 987654 1000000 300 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	s, err := statOf(stat("4242", line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{PID: 4242, State: 'S', PPID: 1, PGRP: 4242, UTime: 250, STime: 50, StartTime: 987654, RSS: 300 * pageSize}
	if s != want {
		t.Fatalf("statOf = %+v, want %+v", s, want)
	}
	if got := s.CPUSeconds(); got != 3 {
		t.Errorf("CPUSeconds = %v, want 3", got)
	}
	if _, err := statOf(stat("1", "1 (x) S 1")); err == nil {
		t.Error("short stat parsed")
	}
	if _, err := readStat(1 << 30); !errors.Is(err, errNoProcess) {
		t.Errorf("readStat of a missing pid = %v, want errNoProcess", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "100")
	cmd.SysProcAttr = procsig.DieWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = procsig.Cmd(cmd, syscall.SIGKILL); cmd.Wait() })
	return cmd
}

func TestAliveIdentityComparesStartTime(t *testing.T) {
	a := startSleep(t)
	b := startSleep(t)
	ida, err := identityOf(a.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	idb, _ := identityOf(b.Process.Pid)
	if ok, detail := aliveIdentity(ida); !ok {
		t.Fatalf("own identity not alive: %s", detail)
	}
	// A real, running process with the same PID but another start time is
	// not the recorded process.
	forged := Identity{PID: a.Process.Pid, StartTime: ida.StartTime + 1}
	if idb.StartTime != ida.StartTime {
		forged.StartTime = idb.StartTime
	}
	if ok, detail := aliveIdentity(forged); ok || !strings.Contains(detail, "reused") {
		t.Fatalf("forged identity alive=%v (%s)", ok, detail)
	}
	_ = procsig.Cmd(a, syscall.SIGKILL)
	a.Wait()
	if ok, _ := aliveIdentity(ida); ok {
		t.Fatal("dead process alive")
	}
}

func pidfileNode(t *testing.T, pidfile string) *started {
	def := &hcl.Agent{Name: "ext", Pidfile: pidfile, Start: []string{"true"}}
	return startNode(t, Options{Config: configOf(def)}, nil)
}

// A pidfile naming a process that started after the pidfile was written
// names somebody else (the PID was reused).
func TestPidfileToUnrelatedFreshProcessIsNotAlive(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "ext.pid")
	n := pidfileNode(t, pidfile)
	ctx := context.Background()

	if ok, detail, _ := n.Alive(ctx, "ext"); ok || !strings.Contains(detail, "pidfile") {
		t.Fatalf("no pidfile: alive=%v %s", ok, detail)
	}
	fresh := startSleep(t)
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(fresh.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(pidfile, old, old); err != nil {
		t.Fatal(err)
	}
	ok, detail, _ := n.Alive(ctx, "ext")
	if ok || !strings.Contains(detail, "not the agent") {
		t.Fatalf("fresh process behind an old pidfile: alive=%v %q", ok, detail)
	}
	// Rewritten by the process (mtime after its start): that is the agent.
	now := time.Now()
	os.Chtimes(pidfile, now, now)
	if ok, detail, _ := n.Alive(ctx, "ext"); !ok {
		t.Fatalf("pidfile written after start: alive=false %q", detail)
	}
}

// reusePID starts a process that gets exactly pid, by setting the pid
// namespace's last allocated pid (as CRIU does), or, without the privilege
// for it, by spawning processes until the PIDs wrap around.
func reusePID(t *testing.T, pid int) *exec.Cmd {
	t.Helper()
	for attempt := 0; attempt < 200; attempt++ {
		err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0o644)
		if err != nil {
			if attempt == 0 {
				t.Logf("ns_last_pid: %v; cycling PIDs instead", err)
			}
			break
		}
		cmd := exec.Command("sleep", "100")
		cmd.SysProcAttr = procsig.DieWithParent()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { _ = procsig.Cmd(cmd, syscall.SIGKILL); cmd.Wait() })
			return cmd
		}
		_ = procsig.Cmd(cmd, syscall.SIGKILL)
		cmd.Wait()
	}
	max, _ := os.ReadFile("/proc/sys/kernel/pid_max")
	limit, _ := strconv.Atoi(strings.TrimSpace(string(max)))
	for i := 0; i < limit+1000; i++ {
		cmd := exec.Command("sleep", "100")
		cmd.SysProcAttr = procsig.DieWithParent()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { _ = procsig.Cmd(cmd, syscall.SIGKILL); cmd.Wait() })
			return cmd
		}
		_ = procsig.Cmd(cmd, syscall.SIGKILL)
		cmd.Wait()
	}
	t.Fatalf("could not get pid %d again", pid)
	return nil
}

// The real thing: the agent dies, the kernel hands its PID to another
// process, the pidfile still names the PID. The recorded start time tells
// them apart.
func TestReusedPIDIsNotAlive(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "ext.pid")
	n := pidfileNode(t, pidfile)
	ctx := context.Background()

	agentProc := exec.Command("sleep", "100")
	agentProc.SysProcAttr = procsig.DieWithParent()
	if err := agentProc.Start(); err != nil {
		t.Fatal(err)
	}
	pid := agentProc.Process.Pid
	recorded, _ := identityOf(pid)
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, detail, _ := n.Alive(ctx, "ext"); !ok {
		t.Fatalf("agent not alive: %s", detail)
	}
	_ = procsig.Cmd(agentProc, syscall.SIGKILL)
	agentProc.Wait()
	if ok, _, _ := n.Alive(ctx, "ext"); ok {
		t.Fatal("dead agent alive")
	}

	// Start times have clock-tick resolution (10 ms); a PID cannot come
	// round again within one tick without the ns_last_pid trick below.
	time.Sleep(30 * time.Millisecond)
	impostor := reusePID(t, pid)
	now, err := identityOf(impostor.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if now.PID != recorded.PID || now.StartTime == recorded.StartTime {
		t.Fatalf("not a reuse: recorded %+v, now %+v", recorded, now)
	}
	ok, detail, _ := n.Alive(ctx, "ext")
	if ok || !strings.Contains(detail, "reused") {
		t.Fatalf("impostor with pid %d: alive=%v %q", pid, ok, detail)
	}
	if ok, _ := aliveIdentity(recorded); ok {
		t.Fatal("stale identity alive")
	}
	t.Logf("pid %d reused: recorded start %d, impostor start %d: %s", pid, recorded.StartTime, now.StartTime, detail)
}

func TestIdentityOfMissingProcess(t *testing.T) {
	if _, err := identityOf(1 << 30); !errors.Is(err, errNoProcess) {
		t.Fatalf("err = %v", err)
	}
}
