package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/procsig"
)

// Nothing outlives its node.
//
// Every script medic runs (repair, diagnose, verify, escalation command,
// probe, stop/start command) is the leader of a process group of its own,
// killed whole on timeout and when it exits, and it gets SIGKILL when the
// node dies (Pdeathsig). What the script started in the background is in
// that group too but has no Pdeathsig: a SIGKILL of the node leaves it
// running, adopted by PID 1. So the node records the group of each script
// while it runs, in Redis, in the hash medic:{node:NAME}:scripts (field:
// the pgid; value: the host's boot id, the recording node's pid and start
// time, and the leader's start time), and the next incarnation of the node
// kills, when it starts, every group recorded by an incarnation that is
// gone. Under systemd the unit's cgroup does this as well (the shipped
// unit's KillMode=mixed kills the whole cgroup when the node dies).
//
// A group is killed only when the record is from this boot, its recorder
// is no longer running (no process with its pid and start time), and the
// group's id has not been taken by a new process since (a process whose
// pid is the pgid, if any, started when the leader did).

// groupOp bounds one write of the group record: a script never waits long
// on Redis to start.
const groupOp = 2 * time.Second

// scriptGroups records the process groups of the node's scripts in Redis
// (an execx.GroupTracker).
type scriptGroups struct {
	c    redis.UniversalClient
	key  string
	boot string
	self string // "PID START" of this process
	log  *slog.Logger
}

func newScriptGroups(c redis.UniversalClient, prefix, node string, log *slog.Logger) *scriptGroups {
	g := &scriptGroups{c: c, key: keys.Scripts(prefix, node), boot: bootID(), log: log}
	g.self = strconv.Itoa(os.Getpid()) + " " + strconv.FormatUint(startTime(os.Getpid()), 10)
	return g
}

// Started records pgid (its leader has just started).
func (g *scriptGroups) Started(pgid int) {
	ctx, cancel := context.WithTimeout(context.Background(), groupOp)
	defer cancel()
	v := g.boot + " " + g.self + " " + strconv.FormatUint(startTime(pgid), 10)
	if err := g.c.HSet(ctx, g.key, strconv.Itoa(pgid), v).Err(); err != nil {
		g.log.Warn("record a script's process group; a SIGKILL of the node now may leave its children running", "pgid", pgid, "err", err)
	}
}

// Ended forgets pgid (the group has been killed).
func (g *scriptGroups) Ended(pgid int) {
	ctx, cancel := context.WithTimeout(context.Background(), groupOp)
	defer cancel()
	g.c.HDel(ctx, g.key, strconv.Itoa(pgid))
}

// killLeftovers kills the groups recorded by incarnations of the node that
// are gone, and forgets them. It returns how many groups it killed.
func (g *scriptGroups) killLeftovers(ctx context.Context) (int, error) {
	all, err := g.c.HGetAll(ctx, g.key).Result()
	if err != nil {
		return 0, fmt.Errorf("read the process groups of the last incarnation's scripts: %w", err)
	}
	killed := 0
	for field, v := range all {
		pgid, err := strconv.Atoi(field)
		f := strings.Fields(v)
		if err != nil || pgid <= 1 || len(f) != 4 {
			g.c.HDel(ctx, g.key, field)
			continue
		}
		boot, ownerPID, ownerStart, leaderStart := f[0], f[1], f[2], f[3]
		if pid, _ := strconv.Atoi(ownerPID); boot == g.boot && pid > 0 && strconv.FormatUint(startTime(pid), 10) == ownerStart {
			continue // its node is running (medic serve and a test's nodes share a process)
		}
		forget := func() { g.c.HDel(ctx, g.key, field) }
		if boot != g.boot {
			forget() // recorded before a reboot: that group is long gone
			continue
		}
		if st := startTime(pgid); st != 0 && strconv.FormatUint(st, 10) != leaderStart {
			forget() // the id is another process's now
			continue
		}
		switch err := procsig.Group(pgid, syscall.SIGKILL); {
		case err == nil:
			killed++
			g.log.Warn("killed the process group of a script the node's last incarnation left running", "pgid", pgid)
		case !errors.Is(err, syscall.ESRCH):
			g.log.Warn("kill a leftover script's process group", "pgid", pgid, "err", err)
		}
		forget()
	}
	return killed, nil
}

// startTime is a process's start time (clock ticks after boot), 0 when it
// is not running (a zombie included).
func startTime(pid int) uint64 {
	id, err := identityOf(pid)
	if err != nil {
		return 0
	}
	return id.StartTime
}

// bootID names this boot of the host.
func bootID() string {
	b, err := os.ReadFile(procRoot + "/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
