package exporter

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/probe"
	"github.com/medicops/medic/runbooks"
)

func TestSupervisedCrashIsRestartedByWatchdog(t *testing.T) {
	def, addr := testAgent(t, "crashy")
	var n *started
	runner := &recordingRunner{}
	n = startNode(t, Options{Config: configOf(def), Runner: runner, WatchdogDebounce: -1}, nil)
	runner.node = n.Node
	first := n.waitServing(t, "crashy")

	code, _ := call(t, "POST", "http://"+addr+"/die?code=3", "")
	if code != 200 {
		t.Fatalf("/die: %d", code)
	}
	waitFor(t, 5*time.Second, "a new process", func() bool {
		id := n.pidOf("crashy")
		return id.PID != 0 && id != first
	})
	second := n.waitServing(t, "crashy")
	if second == first {
		t.Fatalf("identity did not change: %+v", second)
	}
	reqs := runner.requests()
	if len(reqs) != 1 {
		t.Fatalf("watchdog runs = %d, want 1: %+v", len(reqs), reqs)
	}
	want := map[string]string{"alertname": "MedicAgentDown", "agent": "crashy", "node": "node-1"}
	if diff := cmp.Diff(want, reqs[0].Alert.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if reqs[0].Trigger != runbooks.TriggerWatchdog || reqs[0].Agent != "crashy" || reqs[0].Alert.Status != "firing" {
		t.Errorf("request = %+v", reqs[0])
	}
	if got := n.agents["crashy"].restarts.Load(); got != 1 {
		t.Errorf("restarts = %d, want 1", got)
	}
}

func TestWatchdogOffLeavesCrashedAgentDown(t *testing.T) {
	def, addr := testAgent(t, "unguarded")
	def.Watchdog = false
	runner := &recordingRunner{}
	n := startNode(t, Options{Config: configOf(def), Runner: runner}, nil)
	runner.node = n.Node
	n.waitServing(t, "unguarded")
	call(t, "POST", "http://"+addr+"/die", "")
	waitFor(t, 5*time.Second, "agent down", func() bool {
		ok, _, _ := n.Alive(context.Background(), "unguarded")
		return !ok
	})
	time.Sleep(300 * time.Millisecond)
	if ok, detail, _ := n.Alive(context.Background(), "unguarded"); ok {
		t.Fatalf("agent came back without a watchdog: %s", detail)
	}
	if reqs := runner.requests(); len(reqs) != 0 {
		t.Fatalf("runner called %d times with the watchdog off", len(reqs))
	}
}

func TestWatchdogWithoutRunnerRestartsDirectly(t *testing.T) {
	def, addr := testAgent(t, "plain")
	var recs []*runbooks.RunRecord
	recCh := make(chan *runbooks.RunRecord, 4)
	n := startNode(t, Options{Config: configOf(def), OnRecord: func(r *runbooks.RunRecord) { recCh <- r }}, nil)
	first := n.waitServing(t, "plain")
	call(t, "POST", "http://"+addr+"/die", "")
	select {
	case r := <-recCh:
		recs = append(recs, r)
	case <-time.After(5 * time.Second):
		t.Fatal("no watchdog record")
	}
	if recs[0].Outcome != runbooks.OutcomeRecovered || recs[0].Trigger != runbooks.TriggerWatchdog {
		t.Fatalf("record = %+v", recs[0])
	}
	if id := n.waitServing(t, "plain"); id == first {
		t.Fatal("not restarted")
	}
}

// A restart stops the whole process group: SIGTERM, then SIGKILL after the
// grace for an agent that ignores SIGTERM, and its grandchildren too.
func TestRestartKillsGroupEvenWhenTermIgnored(t *testing.T) {
	def, addr := testAgent(t, "stubborn", "--ignore-term")
	n := startNode(t, Options{Config: configOf(def), StopGrace: 300 * time.Millisecond}, nil)
	first := n.waitServing(t, "stubborn")
	_, out := call(t, "POST", "http://"+addr+"/spawn?sleep=1000", "")
	grandchild, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("/spawn: %q", out)
	}
	gid, err := identityOf(grandchild)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := n.Restart(context.Background(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < 300*time.Millisecond {
		t.Errorf("restart took %s: SIGTERM was not ignored?", took)
	}
	if ok, _ := aliveIdentity(first); ok {
		t.Error("old agent survived the restart")
	}
	waitFor(t, 2*time.Second, "grandchild killed", func() bool { ok, _ := aliveIdentity(gid); return !ok })
	if second := n.waitServing(t, "stubborn"); second == first {
		t.Fatal("same identity after restart")
	}
	if got := n.agents["stubborn"].restarts.Load(); got != 1 {
		t.Errorf("restarts = %d", got)
	}
}

func TestSupervisedEnvironmentAndLogs(t *testing.T) {
	def, _ := testAgent(t, "envy")
	def.Command = []string{"/bin/sh", "-c", `echo "agent=$MEDIC_AGENT node=$MEDIC_NODE level=$LOG_LEVEL"; echo oops >&2; i=0; while [ $i -lt 400 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; sleep 100`}
	def.Env = map[string]string{"LOG_LEVEL": "debug"}
	def.Probe = nil
	n := startNode(t, Options{Config: configOf(def), LogMaxBytes: 4096}, nil)
	out := filepath.Join(def.Workdir, "envy.stdout.log")
	waitFor(t, 5*time.Second, "log rotated", func() bool {
		_, err := os.Stat(out + ".1")
		return err == nil
	})
	// The script has written all it will within a moment; then both files
	// are settled.
	time.Sleep(300 * time.Millisecond)
	for _, p := range []string{out, out + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, cap 4096", p, fi.Size())
		}
	}
	errLog, _ := os.ReadFile(filepath.Join(def.Workdir, "envy.stderr.log"))
	if string(errLog) != "oops\n" {
		t.Errorf("stderr log = %q", errLog)
	}
	// The first line may have been rotated away twice; the environment is
	// checked from /proc instead.
	id := n.pidOf("envy")
	env, err := os.ReadFile("/proc/" + strconv.Itoa(id.PID) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MEDIC_AGENT=envy", "MEDIC_NODE=node-1", "LOG_LEVEL=debug", "NOTIFY_SOCKET="} {
		if !strings.Contains(string(env), want) {
			t.Errorf("environment lacks %s", want)
		}
	}
	if strings.Contains(string(env), "WATCHDOG_USEC=") {
		t.Error("WATCHDOG_USEC set without a heartbeat block")
	}
	// Its own process group.
	s, _ := readStat(id.PID)
	if s.PGRP != id.PID {
		t.Errorf("pgrp %d, want own group %d", s.PGRP, id.PID)
	}
}

func TestNodeStopStopsChildren(t *testing.T) {
	def, _ := testAgent(t, "child", "--ignore-term")
	n := startNode(t, Options{Config: configOf(def), StopGrace: 200 * time.Millisecond}, nil)
	id := n.waitServing(t, "child")
	n.stop()
	if ok, _ := aliveIdentity(id); ok {
		_ = procsig.Process(id.PID, syscall.SIGKILL)
		t.Fatal("child outlived the node")
	}
}

// A pidfile agent is restarted with its own stop and start argv; the node
// follows it through the pidfile.
func TestPidfileAgentRestartByArgv(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "ext.pid")
	addr := testport.Addr(t)
	def := &hcl.Agent{
		Name:    "ext",
		Pidfile: pidfile,
		Workdir: dir,
		// setsid -f: the agent leaves the start command's process group,
		// as a daemon started by systemctl would.
		Start: []string{"setsid", "-f", testagentBin, "--listen", addr, "--pidfile", pidfile},
		Stop:  []string{"sh", "-c", `kill "$(cat "$0")"; while kill -0 "$(cat "$0")" 2>/dev/null; do sleep 0.01; done`, pidfile},
		Probe: &hcl.Probe{Kind: probe.HTTP, URL: "http://" + addr + "/healthz", Timeout: time.Second},
	}
	n := startNode(t, Options{Config: configOf(def)}, nil)
	ctx := context.Background()
	if ok, _, _ := n.Alive(ctx, "ext"); ok {
		t.Fatal("alive before start")
	}
	// Not running: the stop argv fails, so start it by hand once.
	if res := execStart(t, def.Start); res != nil {
		t.Fatal(res)
	}
	first := n.waitServing(t, "ext")
	t.Cleanup(func() { _ = procsig.Process(n.pidOf("ext").PID, syscall.SIGKILL) })
	if err := n.Restart(ctx, "ext"); err != nil {
		t.Fatal(err)
	}
	second := n.waitServing(t, "ext")
	if second == first || second.PID == 0 {
		t.Fatalf("identity %+v → %+v", first, second)
	}
	if ok, _ := aliveIdentity(first); ok {
		t.Fatal("old process survived its stop argv")
	}
	if got := n.agents["ext"].restarts.Load(); got != 1 {
		t.Errorf("restarts = %d", got)
	}

	// A failing stop argv fails the restart and starts nothing.
	def2 := *def
	def2.Stop = []string{"false"}
	n.agents["ext"].setDef(&def2)
	if err := n.Restart(ctx, "ext"); err == nil || !strings.Contains(err.Error(), "stop [false]") {
		t.Fatalf("restart with a failing stop = %v", err)
	}
	if id := n.pidOf("ext"); id != second {
		t.Fatalf("agent changed after a failed stop: %+v", id)
	}
}

func execStart(t *testing.T, argv []string) error {
	t.Helper()
	return exec.Command(argv[0], argv[1:]...).Run()
}
