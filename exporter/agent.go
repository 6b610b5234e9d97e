package exporter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
	"github.com/medicops/medic/internal/procsig"
)

// pidfileSlack tolerates the pidfile's mtime being a little older than the
// computed start time of the process that wrote it (btime is whole seconds
// and the wall clock may have been slewed since boot).
const pidfileSlack = time.Second

// stopCommandTimeout bounds a pidfile agent's start and stop argv.
const stopCommandTimeout = 60 * time.Second

// agent is the node's view of one agent.
type agent struct {
	n    *Node
	name string

	// opMu serialises start, stop and restart.
	opMu sync.Mutex

	mu     sync.Mutex
	defn   *hcl.Agent
	ctx    context.Context // ends when the agent is removed or the node stops
	cancel context.CancelFunc
	child  *child // supervised: current (or last) process

	// pidfile agents: the identity recorded when the pidfile's process was
	// first seen alive, and the pidfile mtime it was read at; pidCache
	// saves re-reading an unchanged pidfile.
	pidID    Identity
	pidMtime time.Time
	pidCache pidfileCache

	hb    heartbeat
	probe probeResult

	restarts atomic.Uint64

	notify     *net.UnixConn
	notifyPath string
	ready      bool

	wd watchdogState

	view agentView // scrape cache
	// gen counts changes of the process or of its heartbeat registration;
	// a cached view taken at another gen is stale, so a snapshot never
	// pairs a live registration with an older process's PID.
	gen uint64

	// cpuBase opens the CPU window of the next diagnosis early (preSample);
	// cpuBaseFor is the heartbeat it was taken for.
	cpuBase    cpuBaseline
	cpuBaseFor time.Time
}

// child is one supervised process.
type child struct {
	cmd      *exec.Cmd
	id       Identity
	started  time.Time
	exited   chan struct{}
	status   string // exit status once exited
	stopping bool   // medic stopped it: not a crash
	logs     []*rotatingFile
}

func newAgent(n *Node, def *hcl.Agent) *agent {
	return &agent{n: n, name: def.Name, defn: def}
}

func (a *agent) def() *hcl.Agent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.defn
}

func (a *agent) setDef(def *hcl.Agent) {
	a.mu.Lock()
	a.defn = def
	if def.Heartbeat != nil && a.hb.registered && a.hb.via == "config" {
		a.hb.timeout = def.Heartbeat.Timeout
	}
	a.mu.Unlock()
}

// workdir is where a supervised agent runs and whose filesystem its disk
// ratio is measured on.
func (a *agent) workdir() string {
	def := a.def()
	if def.Workdir != "" {
		return def.Workdir
	}
	if def.Supervised() && a.n.runtimeDir != "" {
		return filepath.Join(a.n.runtimeDir, "agents", a.name)
	}
	return "/"
}

// pidfileCache is the last pidfile content read, by mtime and size.
type pidfileCache struct {
	mtime time.Time
	size  int64
	pid   int
	err   string
}

// alive reports whether the agent's process exists, and its identity.
func (a *agent) alive() (bool, string, Identity) { return a.aliveWith(readStat) }

// aliveWith is alive with /proc reads through stat (a scrape passes its
// shared scan).
func (a *agent) aliveWith(stat statFunc) (bool, string, Identity) {
	if a.def().Supervised() {
		a.mu.Lock()
		c := a.child
		a.mu.Unlock()
		if c == nil {
			return false, "not started", Identity{}
		}
		select {
		case <-c.exited:
			return false, fmt.Sprintf("pid %d exited (%s)", c.id.PID, c.status), Identity{}
		default:
		}
		ok, detail := aliveIdentityWith(stat, c.id)
		if !ok {
			return false, detail, Identity{}
		}
		return true, detail, c.id
	}
	return a.pidfileAliveWith(stat)
}

// pidfileAlive reads the pidfile and decides whether its PID is the agent:
// the process must not have started after the pidfile was written, and
// once recorded, its start time must not change while the pidfile does not.
func (a *agent) pidfileAlive() (bool, string, Identity) { return a.pidfileAliveWith(readStat) }

func (a *agent) pidfileAliveWith(stat statFunc) (bool, string, Identity) {
	path := a.def().Pidfile
	if path == "" {
		return false, "no pidfile configured", Identity{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, fmt.Sprintf("pidfile: %v", err), Identity{}
	}
	a.mu.Lock()
	cache := a.pidCache
	a.mu.Unlock()
	if !cache.mtime.Equal(fi.ModTime()) || cache.size != fi.Size() || cache.mtime.IsZero() {
		cache = pidfileCache{mtime: fi.ModTime(), size: fi.Size()}
		b, err := os.ReadFile(path)
		if err != nil {
			return false, fmt.Sprintf("pidfile: %v", err), Identity{}
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			cache.err = fmt.Sprintf("pidfile %s: no pid in %q", path, truncate(string(b), 32))
		}
		cache.pid = pid
		a.mu.Lock()
		a.pidCache = cache
		a.mu.Unlock()
	}
	if cache.err != "" {
		return false, cache.err, Identity{}
	}
	pid := cache.pid
	id, err := identityWith(stat, pid)
	if err != nil {
		return false, fmt.Sprintf("pid %d (from %s) not running", pid, path), Identity{}
	}
	mtime := fi.ModTime()

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pidID.PID == pid && a.pidMtime.Equal(mtime) {
		if a.pidID.StartTime != id.StartTime {
			return false, fmt.Sprintf("pid %d reused: start time %d, recorded %d", pid, id.StartTime, a.pidID.StartTime), Identity{}
		}
		return true, fmt.Sprintf("pid %d alive", pid), id
	}
	started := startWallTime(a.n.boot, id.StartTime)
	if started.After(mtime.Add(pidfileSlack)) {
		return false, fmt.Sprintf("pid %d started %s, after %s was written %s: not the agent (reused pid)",
			pid, started.UTC().Format(time.RFC3339), path, mtime.UTC().Format(time.RFC3339)), Identity{}
	}
	a.pidID, a.pidMtime = id, mtime
	return true, fmt.Sprintf("pid %d alive", pid), id
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// env is the supervised child's environment (beyond execx's minimal base).
func (a *agent) env(def *hcl.Agent) map[string]string {
	env := make(map[string]string, len(def.Env)+4)
	for k, v := range def.Env {
		env[k] = v
	}
	env["MEDIC_AGENT"] = a.name
	env["MEDIC_NODE"] = a.n.opts.NodeName
	if a.notifyPath != "" {
		env["NOTIFY_SOCKET"] = a.notifyPath
		if def.Heartbeat != nil && def.Heartbeat.Timeout > 0 {
			env["WATCHDOG_USEC"] = strconv.FormatInt(def.Heartbeat.Timeout.Microseconds(), 10)
		}
	}
	return env
}

// spawn starts the supervised process. The caller holds opMu (or is the
// first start).
func (a *agent) spawn() error {
	def := a.def()
	if a.n.runtimeDir == "" {
		return errors.New("node not running")
	}
	dir := a.workdir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("workdir: %w", err)
	}
	var logs []*rotatingFile
	var pipes []*os.File
	closeAll := func() {
		for _, p := range pipes {
			p.Close()
		}
	}
	for _, stream := range []string{"stdout", "stderr"} {
		lf, err := openRotating(filepath.Join(dir, a.name+"."+stream+".log"), a.n.opts.LogMaxBytes)
		if err != nil {
			closeAll()
			return fmt.Errorf("log file: %w", err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			lf.Close()
			closeAll()
			return err
		}
		logs = append(logs, lf)
		pipes = append(pipes, r, w)
	}
	cmd := exec.Command(def.Command[0], def.Command[1:]...)
	cmd.Dir = dir
	cmd.Env = execx.Environ(a.env(def), false)
	// The child writes to plain pipes; copying them to the capped files is
	// ours, so Wait never waits for a grandchild holding the pipe open.
	cmd.Stdout, cmd.Stderr = pipes[1], pipes[3]
	// A group of its own, so stopping it takes its children too; and it
	// dies with medic node, as under systemd's control-group kill, so a
	// crashed node restarted never finds a second copy still running.
	cmd.SysProcAttr = procsig.ChildAttr()
	err := cmd.Start()
	pipes[1].Close()
	pipes[3].Close()
	if err != nil {
		pipes[0].Close()
		pipes[2].Close()
		for _, l := range logs {
			l.Close()
		}
		return fmt.Errorf("start %s: %w", def.Command[0], err)
	}
	for i, l := range logs {
		go l.copyFrom(pipes[2*i])
	}
	c := &child{cmd: cmd, started: time.Now(), exited: make(chan struct{}), logs: logs}
	id, err := identityOf(cmd.Process.Pid)
	if err != nil {
		// It exited before we could read it; Wait below reports how.
		id = Identity{PID: cmd.Process.Pid}
	}
	c.id = id

	a.mu.Lock()
	a.child = c
	a.ready = false
	a.resetHeartbeatLocked(a.n.now())
	a.mu.Unlock()
	a.n.log.Info("agent started", "agent", a.name, "pid", id.PID)

	go a.waitChild(c)
	return nil
}

func (a *agent) waitChild(c *child) {
	err := c.cmd.Wait()
	status := "exit 0"
	if ps := c.cmd.ProcessState; ps != nil {
		status = ps.String()
	} else if err != nil {
		status = err.Error()
	}
	a.mu.Lock()
	c.status = status
	intended := c.stopping
	ctx := a.ctx
	if a.child == c {
		// The registration belonged to the process that is gone; the down
		// agent is MedicAgentDown's business, not a missed heartbeat.
		a.hb = heartbeat{}
	}
	a.gen++
	a.mu.Unlock()
	close(c.exited)
	if intended || ctx == nil || ctx.Err() != nil {
		return
	}
	a.n.log.Warn("agent exited", "agent", a.name, "pid", c.id.PID, "status", status)
	a.n.trigger(a, alertDown, fmt.Sprintf("pid %d %s", c.id.PID, status))
}

// stopChild stops a supervised process and everything in its process
// group: SIGTERM, up to StopGrace, then SIGKILL.
func (a *agent) stopChild(c *child) {
	a.mu.Lock()
	c.stopping = true
	a.mu.Unlock()
	pgid := c.id.PID
	select {
	case <-c.exited:
	default:
		_ = procsig.Group(pgid, syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(a.n.opts.StopGrace):
			a.n.log.Warn("agent ignored SIGTERM; killing its process group", "agent", a.name, "pid", pgid, "grace", a.n.opts.StopGrace)
		}
	}
	// Also whatever the leader left behind in its group.
	_ = procsig.Group(pgid, syscall.SIGKILL)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		a.n.log.Error("agent did not exit after SIGKILL", "agent", a.name, "pid", pgid)
	}
}

// restart stops the agent if it runs and starts it again.
func (a *agent) restart(ctx context.Context) error {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.mu.Lock()
	actx := a.ctx
	a.mu.Unlock()
	if actx == nil || actx.Err() != nil {
		return fmt.Errorf("agent %s: node not running", a.name)
	}
	def := a.def()
	if def.Supervised() {
		a.mu.Lock()
		c := a.child
		a.mu.Unlock()
		if c != nil {
			a.stopChild(c)
		}
		if err := a.spawn(); err != nil {
			return err
		}
	} else if err := a.restartExternal(ctx, def); err != nil {
		return err
	}
	a.restarts.Add(1)
	a.waitStarted(ctx)
	return nil
}

// waitStarted waits (up to StartWait) until the restarted agent passes its
// probe, or is alive when it has no probe, or has exited.
func (a *agent) waitStarted(ctx context.Context) {
	if a.n.opts.StartWait <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, a.n.opts.StartWait)
	defer cancel()
	for {
		alive, _, _ := a.alive()
		if alive {
			if a.def().Probe == nil || a.probeNow(ctx).OK {
				return
			}
		} else if a.def().Supervised() {
			return // exited already: nothing to wait for
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// restartExternal restarts a pidfile agent with its stop and start argv.
// Without a stop argv the recorded process (and its group when it leads
// one) is signalled directly.
func (a *agent) restartExternal(ctx context.Context, def *hcl.Agent) error {
	began := time.Now() // compared with process start times: the real clock
	env := map[string]string{"MEDIC_AGENT": a.name, "MEDIC_NODE": a.n.opts.NodeName}
	if len(def.Stop) > 0 {
		res := execx.Run(ctx, execx.Cmd{Argv: def.Stop, Env: env, Timeout: stopCommandTimeout, Grace: time.Second})
		if !res.OK() {
			return fmt.Errorf("stop %v: %v: %s", def.Stop, res.Err, truncate(res.Output, 512))
		}
	} else if ok, _, id := a.pidfileAlive(); ok {
		a.killExternal(id)
	}
	if len(def.Start) == 0 {
		return fmt.Errorf("agent %s has no start command", a.name)
	}
	res := execx.Run(ctx, execx.Cmd{Argv: def.Start, Env: env, Timeout: stopCommandTimeout, Grace: time.Second})
	if !res.OK() {
		return fmt.Errorf("start %v: %v: %s", def.Start, res.Err, truncate(res.Output, 512))
	}
	a.mu.Lock()
	a.pidID, a.pidMtime = Identity{}, time.Time{}
	a.resetHeartbeatLocked(a.n.now())
	a.mu.Unlock()
	return a.confirmStarted(ctx, def, began)
}

// startSettle is how long the pidfile's process must stay alive before a
// restart counts: a start command that does not detach takes the agent
// down with its process group when it exits (execx kills the group), a
// few milliseconds after the pidfile was written.
const startSettle = 200 * time.Millisecond

// confirmStarted waits, up to StartWait (at least a second), for the
// pidfile to name a live process that started after the restart began and
// stays alive for startSettle. A start command's exit status only says
// that the command ran; `cmd & echo $! > pidfile` exits 0 and its agent
// dies with it.
func (a *agent) confirmStarted(ctx context.Context, def *hcl.Agent, began time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, max(a.n.opts.StartWait, time.Second))
	defer cancel()
	var seen time.Time // when the new process was first seen alive
	var detail string
	for {
		ok, d, id := a.pidfileAlive()
		detail = d
		switch {
		case !ok:
			seen = time.Time{}
		case startWallTime(a.n.boot, id.StartTime).Before(began.Add(-pidfileSlack)):
			seen = time.Time{}
			detail = fmt.Sprintf("pid %d started %s, before the restart began: the pidfile still names the old process", id.PID,
				startWallTime(a.n.boot, id.StartTime).UTC().Format(time.RFC3339))
		case seen.IsZero():
			seen = time.Now()
		case time.Since(seen) >= startSettle:
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("start %v exited 0 but the agent is not running: %s; a start command must leave the agent running on its own (detach it, e.g. setsid -f) and write its pidfile", def.Start, detail)
		case <-t.C:
		}
	}
}

func (a *agent) killExternal(id Identity) {
	send := procsig.Process
	if s, err := readStat(id.PID); err == nil && s.PGRP == id.PID {
		send = procsig.Group // it leads its group: take the whole group
	}
	_ = send(id.PID, syscall.SIGTERM)
	deadline := time.Now().Add(a.n.opts.StopGrace)
	for time.Now().Before(deadline) {
		if ok, _ := aliveIdentity(id); !ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, _ := aliveIdentity(id); ok {
		_ = send(id.PID, syscall.SIGKILL)
	}
}

// shutdown stops watching the agent and stops its supervised process.
func (a *agent) shutdown() {
	a.mu.Lock()
	if a.cancel != nil {
		a.cancel()
	}
	a.mu.Unlock()
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.mu.Lock()
	c := a.child
	conn := a.notify
	a.notify = nil
	a.mu.Unlock()
	if c != nil {
		a.stopChild(c)
		for _, l := range c.logs {
			l.waitClosed(time.Second)
		}
	}
	if conn != nil {
		conn.Close()
		os.Remove(a.notifyPath)
	}
}
