package exporter

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/internal/execx"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/redistest"
)

// startLeftover starts a script that backgrounds a grandchild, in a group
// of its own, and returns the group id and the grandchild's pid.
func startLeftover(t *testing.T) (pgid, grandchild int) {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "gc.pid")
	cmd := exec.Command("sh", "-c", "sleep 300 & echo $! > "+pidfile+"; wait")
	cmd.SysProcAttr = procsig.ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { procsig.CmdGroup(cmd, syscall.SIGKILL); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidfile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			gc, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return cmd.Process.Pid, gc
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the script did not start its grandchild")
	return 0, 0
}

func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.State != 'Z'
}

// The groups a dead incarnation recorded are killed, grandchildren
// included; those of a running one (this process) and of another boot
// are left alone.
func TestKillLeftoverScriptGroups(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	c := rs.Client()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	g := newScriptGroups(c, "medic:", "n1", log)

	// A dead recorder: a process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphaned, orphanGC := startLeftover(t)
	mine, mineGC := startLeftover(t)
	otherBoot, otherBootGC := startLeftover(t)
	rec := func(pgid int, boot, owner string) {
		c.HSet(ctx, keys.Scripts("medic:", "n1"), strconv.Itoa(pgid), boot+" "+owner+" "+strconv.FormatUint(startTime(pgid), 10))
	}
	rec(orphaned, g.boot, strconv.Itoa(dead.Process.Pid)+" 1")
	rec(mine, g.boot, g.self)
	rec(otherBoot, "another-boot", strconv.Itoa(dead.Process.Pid)+" 1")

	n, err := g.killLeftovers(ctx)
	if err != nil || n != 1 {
		t.Fatalf("killed %d groups (%v), want 1", n, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(orphanGC) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(orphanGC) {
		t.Errorf("the grandchild %d of a dead incarnation's script is still running", orphanGC)
	}
	if !alive(mineGC) || !alive(otherBootGC) {
		t.Errorf("killed a live incarnation's or another boot's group: mine %v, other boot %v", alive(mineGC), alive(otherBootGC))
	}
	left := c.HKeys(ctx, keys.Scripts("medic:", "n1")).Val()
	if len(left) != 1 || left[0] != strconv.Itoa(mine) {
		t.Errorf("groups still recorded: %v, want only %d", left, mine)
	}
}

// execx.Run reports its groups to the tracker: recorded while running,
// forgotten when done.
func TestScriptGroupsTracksRun(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	c := rs.Client()
	ctx := context.Background()
	g := newScriptGroups(c, "medic:", "n1", slog.New(slog.DiscardHandler))
	defer execx.SetGroupTracker(g)()
	release := filepath.Join(t.TempDir(), "release")
	done := make(chan execx.Result, 1)
	go func() {
		done <- execx.Run(ctx, execx.Cmd{
			Argv:    []string{"sh", "-c", "while [ ! -e " + release + " ]; do sleep 0.05; done"},
			Timeout: 30 * time.Second,
		})
	}()
	var fields []string
	for deadline := time.Now().Add(10 * time.Second); len(fields) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		fields = c.HKeys(ctx, keys.Scripts("medic:", "n1")).Val()
	}
	if len(fields) != 1 {
		t.Fatalf("groups recorded while the script runs: %v, want one", fields)
	}
	os.WriteFile(release, nil, 0o600)
	if res := <-done; !res.OK() {
		t.Fatal(res.Err)
	}
	if n := c.HLen(ctx, keys.Scripts("medic:", "n1")).Val(); n != 0 {
		t.Errorf("%d groups still recorded after the run ended", n)
	}
}
