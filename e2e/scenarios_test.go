package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/runbooks"
)

// TestE2E starts one stack (Redis, two bridges, one node, an Alertmanager
// HA pair, Prometheus) and runs every scenario on it in parallel, each
// with its own agents; then checks the dashboards and the status page
// against what the scenarios produced.
func TestE2E(t *testing.T) {
	s := startStack(t, stackOptions{Scenarios: allScenarios})
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range allScenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				sc.run(t, s)
			})
		}
	})
	if t.Failed() {
		t.Log("not checking dashboards and status page: a scenario failed")
		return
	}
	t.Run("dashboards", func(t *testing.T) { testDashboards(t, s) })
	t.Run("status-page", func(t *testing.T) { testStatusPage(t, s) })
}

var allScenarios = []scenario{
	{name: "kill-restart", hcl: killRestartHCL, run: killRestart},
	{name: "memory-hang", hcl: memoryHangHCL, run: memoryHang},
	{name: "unrecoverable", hcl: unrecoverableHCL, run: unrecoverable},
	{name: "heartbeat", hcl: heartbeatHCL, run: heartbeat},
	{name: "ha-dedup", hcl: haDedupHCL, run: haDedup},
	{name: "pool-switchover", hcl: poolHCL, run: poolSwitchover},
}

// recoveryRunbook renders a runbook for one alert of one agent that
// restarts it and verifies every 250ms, up to attempts times (0: 20).
func recoveryRunbook(s *stack, name, alertname, agent, causes string, attempts int) string {
	if attempts == 0 {
		attempts = 20
	}
	return fmt.Sprintf(`runbook %q {
  match {
    alertname = %q
    agent     = %q
  }
%s
  verify {
    attempts = %d
    interval = "250ms"
  }
  escalate {
    webhook = %q
    timeout = "2s"
  }
  budget {
    restarts = 10
    window   = "1h"
  }
}
`, name, alertname, agent, causes, attempts, s.esc.url())
}

// ---- (a) an agent is killed and restarted through the alert path.

func killRestartHCL(s *stack) string {
	return s.supervisedAgent("ta-kill", "  watchdog = false\n") +
		recoveryRunbook(s, "e2e-kill", "MedicAgentDown", "ta-kill", "", 0)
}

func killRestart(t *testing.T, s *stack) {
	before := s.waitAgentUp(t, "ta-kill", 30*time.Second)
	s.kill(t, "ta-kill")
	labels := map[string]string{"alertname": "MedicAgentDown", "agent": "ta-kill", "node": nodeName}
	am := s.waitFiring(t, labels, 20*time.Second)

	run := s.waitRun(t, "ta-kill", 30*time.Second, func(r runbooks.RunRecord) bool {
		return r.Runbook == "e2e-kill" && r.Outcome == runbooks.OutcomeRecovered
	})
	if run.Trigger != runbooks.TriggerAlert || run.Node != nodeName || run.Fingerprint != am.Fingerprint {
		t.Errorf("run %s: trigger %q node %q fingerprint %q (alert %q)", run.ID, run.Trigger, run.Node, run.Fingerprint, am.Fingerprint)
	}
	if !hasStep(run, "liveness", false) && !hasStep(run, "liveness", true) {
		t.Errorf("run has no liveness step: %s", stepNames(run))
	}
	if !hasStep(run, "restart", true) || !hasStep(run, "verify", true) {
		t.Errorf("run lacks a good restart and verify: %s", summarizeRuns([]runbooks.RunRecord{run}))
	}
	after := s.waitAgentUp(t, "ta-kill", 10*time.Second)
	if after == before {
		t.Errorf("pid %d did not change after kill and restart", after)
	}
	s.waitResolved(t, labels, 20*time.Second)
	if v, ok := s.query(`medic_agent_up{agent="ta-kill"}`); !ok || v != 1 {
		t.Errorf("medic_agent_up{agent=ta-kill} = %v (%v), want 1", v, ok)
	}
}

// ---- (b) a hung agent with memory over its threshold: memory cause,
// repair script with the labels in its environment, restart, verify.

// memThresholdBytes is the RSS above which ta-mem counts as leaking; the
// test agent starts well below it and leaks well above it.
const memThresholdBytes = 48 << 20

func memoryHangHCL(s *stack) string {
	script := filepath.Join(s.base, "repair-memory.sh")
	out := filepath.Join(s.base, "repair-memory.env")
	os.WriteFile(script, []byte(`#!/bin/sh
# Records the environment medic gave it; the alert labels arrive only here.
env | grep '^MEDIC_' | sort > "$1"
echo "repair: released memory of $MEDIC_AGENT (cause $MEDIC_CAUSE)"
`), 0o755)
	ratio := float64(memThresholdBytes) / float64(memTotal(s.t))
	body := fmt.Sprintf("  watchdog = false\n  thresholds {\n    memory = %.6f\n  }\n", ratio)
	causes := fmt.Sprintf(`  cause "memory" {
    when    = usage.memory > agent.thresholds.memory
    repair  = %s
    timeout = "5s"
  }
  cause "disk" {
    when   = usage.disk > 1.5
    repair = ["/bin/false"]
  }
`, hclList([]string{script, out}))
	return s.supervisedAgent("ta-mem", body) +
		recoveryRunbook(s, "e2e-memory", "MedicAgentProbeFailing", "ta-mem", causes, 0)
}

func memTotal(t testing.TB) uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb uint64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

func memoryHang(t *testing.T, s *stack) {
	before := s.waitAgentUp(t, "ta-mem", 30*time.Second)
	s.poke(t, "ta-mem", fmt.Sprintf("/leak?mb=%d", 2*memThresholdBytes>>20))
	s.poke(t, "ta-mem", "/hang")
	labels := map[string]string{"alertname": "MedicAgentProbeFailing", "agent": "ta-mem", "node": nodeName}
	s.waitFiring(t, labels, 20*time.Second)

	run := s.waitRun(t, "ta-mem", 30*time.Second, func(r runbooks.RunRecord) bool {
		return r.Runbook == "e2e-memory" && r.Outcome != ""
	})
	if run.Outcome != runbooks.OutcomeRecovered {
		t.Fatalf("outcome %q: %s", run.Outcome, summarizeRuns([]runbooks.RunRecord{run}))
	}
	if !slices.Equal(run.Causes, []string{"memory"}) {
		t.Errorf("causes %v, want [memory]", run.Causes)
	}
	if run.Usage == nil || run.Usage.Memory*float64(memTotal(t)) < memThresholdBytes {
		t.Errorf("usage %+v: memory not above the threshold", run.Usage)
	}
	order := []string{}
	for _, st := range run.Steps {
		if st.Name == "repair:memory" || st.Name == "restart" || (stepIs(st, "verify") && st.OK) {
			order = append(order, strings.Fields(st.Name)[0])
			if !st.OK {
				t.Errorf("step %s failed: %s %s", st.Name, st.Error, st.Output)
			}
		}
	}
	if len(order) < 3 || order[0] != "repair:memory" || order[1] != "restart" || order[len(order)-1] != "verify" {
		t.Errorf("steps %v, want repair:memory, restart, verify in that order (%s)", order, stepNames(run))
	}
	for _, st := range run.Steps {
		if st.Name == "repair:memory" && !strings.Contains(st.Output, "released memory of ta-mem (cause memory)") {
			t.Errorf("repair output %q", st.Output)
		}
	}

	env, err := os.ReadFile(filepath.Join(s.base, "repair-memory.env"))
	if err != nil {
		t.Fatalf("the repair script did not run: %v", err)
	}
	for _, want := range []string{
		"MEDIC_AGENT=ta-mem", "MEDIC_NODE=" + nodeName, "MEDIC_CAUSE=memory", "MEDIC_RUN_ID=" + run.ID,
		"MEDIC_LABEL_ALERTNAME=MedicAgentProbeFailing", "MEDIC_LABEL_AGENT=ta-mem", "MEDIC_LABEL_SEVERITY=critical",
	} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("repair environment lacks %s:\n%s", want, env)
		}
	}

	after := s.waitAgentUp(t, "ta-mem", 10*time.Second)
	if after == before {
		t.Errorf("pid %d did not change", after)
	}
	s.waitResolved(t, labels, 20*time.Second)
	harness.Eventually(t, 10*time.Second, 200*time.Millisecond, "new process below the memory threshold", func() (bool, string) {
		v, ok := s.query(`medic_agent_resident_memory_bytes{agent="ta-mem"}`)
		return ok && v < memThresholdBytes, fmt.Sprint(v, ok)
	})
}

// ---- (c) an agent whose start fails is escalated with its run record.

func unrecoverableHCL(s *stack) string {
	return s.supervisedAgent("ta-fail", "  watchdog = false\n", "--fail-start") +
		recoveryRunbook(s, "e2e-unrecoverable", "MedicAgentDown", "ta-fail", "", 2)
}

func unrecoverable(t *testing.T, s *stack) {
	labels := map[string]string{"alertname": "MedicAgentDown", "agent": "ta-fail", "node": nodeName}
	s.waitFiring(t, labels, 20*time.Second)
	run := s.waitRun(t, "ta-fail", 30*time.Second, func(r runbooks.RunRecord) bool {
		return r.Runbook == "e2e-unrecoverable" && r.Outcome != ""
	})
	if run.Outcome != runbooks.OutcomeEscalated {
		t.Fatalf("outcome %q, want escalated: %s", run.Outcome, summarizeRuns([]runbooks.RunRecord{run}))
	}
	if !hasStep(run, "escalate", true) {
		t.Errorf("no successful escalate step: %s", summarizeRuns([]runbooks.RunRecord{run}))
	}
	var got []map[string]any
	harness.Eventually(t, 10*time.Second, 50*time.Millisecond, "escalation webhook", func() (bool, string) {
		got = s.esc.find(func(m map[string]any) bool {
			r, _ := m["run"].(map[string]any)
			return r != nil && r["id"] == run.ID
		})
		return len(got) > 0, fmt.Sprintf("%d escalations so far", len(s.esc.find(func(map[string]any) bool { return true })))
	})
	r := got[0]["run"].(map[string]any)
	if r["agent"] != "ta-fail" || r["outcome"] != runbooks.OutcomeEscalated {
		t.Errorf("escalated record: agent %v outcome %v", r["agent"], r["outcome"])
	}
	if a, _ := got[0]["alert"].(map[string]any); a == nil || fmt.Sprint(a["labels"]) == "" ||
		a["labels"].(map[string]any)["alertname"] != "MedicAgentDown" {
		t.Errorf("escalation alert: %v", got[0]["alert"])
	}
	// Nothing is running and the alert stays: humans have it now.
	if _, err := s.agentPID("ta-fail"); err == nil {
		t.Errorf("ta-fail answers although its start fails")
	}
	time.Sleep(2 * time.Second)
	if ok, why := s.firingNow(labels); !ok {
		t.Errorf("the alert of an unrecoverable agent should stay firing: %s", why)
	}
	if v, ok := s.query(`medic_agent_up{agent="ta-fail"}`); !ok || v != 0 {
		t.Errorf("medic_agent_up{agent=ta-fail} = %v (%v), want 0", v, ok)
	}
	if runs, _ := s.runs("ta-fail"); countRunbook(runs, "e2e-unrecoverable") != 1 {
		t.Errorf("want one run for the one episode: %s", summarizeRuns(runs))
	}
}

func countRunbook(runs []runbooks.RunRecord, name string) int {
	n := 0
	for _, r := range runs {
		if r.Runbook == name {
			n++
		}
	}
	return n
}

// ---- (d) a heartbeat stops and the agent is restarted.

func heartbeatHCL(s *stack) string {
	node := "http://127.0.0.1:" + strconv.Itoa(s.port("node"))
	body := "  watchdog = false\n  heartbeat {\n    timeout = \"2s\"\n  }\n"
	return s.supervisedAgent("ta-hb", body, "--heartbeat-url="+node, "--heartbeat-interval=250ms") +
		recoveryRunbook(s, "e2e-heartbeat", "MedicAgentHeartbeatMissed", "ta-hb", "", 0)
}

func heartbeat(t *testing.T, s *stack) {
	before := s.waitAgentUp(t, "ta-hb", 30*time.Second)
	harness.Eventually(t, 10*time.Second, 100*time.Millisecond, "ta-hb beating", func() (bool, string) {
		v, ok := s.query(`medic_agent_heartbeat_age_seconds{agent="ta-hb"}`)
		return ok && v < 1, fmt.Sprint(v, ok)
	})
	s.poke(t, "ta-hb", "/stop-heartbeat")
	labels := map[string]string{"alertname": "MedicAgentHeartbeatMissed", "agent": "ta-hb", "node": nodeName}
	s.waitFiring(t, labels, 20*time.Second)
	run := s.waitRun(t, "ta-hb", 30*time.Second, func(r runbooks.RunRecord) bool {
		return r.Runbook == "e2e-heartbeat" && r.Outcome != ""
	})
	if run.Outcome != runbooks.OutcomeRecovered || !hasStep(run, "restart", true) {
		t.Fatalf("want recovered by restart: %s", summarizeRuns([]runbooks.RunRecord{run}))
	}
	after := s.waitAgentUp(t, "ta-hb", 10*time.Second)
	if after == before {
		t.Errorf("pid %d did not change", after)
	}
	s.waitResolved(t, labels, 20*time.Second)
	if v, ok := s.query(`medic_agent_heartbeat_age_seconds{agent="ta-hb"}`); !ok || v >= 2 {
		t.Errorf("heartbeat age after restart %v (%v)", v, ok)
	}
}

// ---- (e) two clustered Alertmanagers post to two bridges: one run.

func haDedupHCL(s *stack) string {
	return s.supervisedAgent("ta-ha", "  watchdog = false\n") +
		recoveryRunbook(s, "e2e-ha", "MedicAgentDown", "ta-ha", "", 0)
}

func haDedup(t *testing.T, s *stack) {
	if len(s.ams) < 2 || len(s.bridges) < 2 {
		t.Fatalf("needs an Alertmanager pair and two bridges")
	}
	s.waitAgentUp(t, "ta-ha", 30*time.Second)
	s.kill(t, "ta-ha")
	labels := map[string]string{"alertname": "MedicAgentDown", "agent": "ta-ha"}
	am := s.waitFiring(t, labels, 20*time.Second)
	run := s.waitRun(t, "ta-ha", 30*time.Second, func(r runbooks.RunRecord) bool {
		return r.Runbook == "e2e-ha" && r.Outcome == runbooks.OutcomeRecovered
	})
	// Both Alertmanagers hold the alert (waitFiring checked); whichever
	// notifies posts to both bridges, and the other member may notify too.
	for _, b := range s.bridges {
		harness.Eventually(t, 10*time.Second, 100*time.Millisecond, b.Name+" received alerts", func() (bool, string) {
			n, err := scrapeSum(b.URL+"/metrics", "medic_alerts_received_total", `status="firing"`)
			return err == nil && n > 0, fmt.Sprint(n, err)
		})
	}
	harness.Eventually(t, 10*time.Second, 100*time.Millisecond, "a bridge counted a duplicate", func() (bool, string) {
		v, ok := s.query(`sum(medic_alerts_deduplicated_total)`)
		return ok && v > 0, fmt.Sprint(v, ok)
	})
	s.waitResolved(t, labels, 20*time.Second)
	// Let any late duplicate land, then count the runs of the episode.
	time.Sleep(1500 * time.Millisecond)
	runs, err := s.runs("ta-ha")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range runs {
		if r.Runbook == "e2e-ha" && r.StartsAt.Equal(am.StartsAt) {
			n++
		}
	}
	if n != 1 || run.Fingerprint != am.Fingerprint {
		t.Errorf("want exactly one run of episode %s@%s, got %d: %s", am.Fingerprint, am.StartsAt, n, summarizeRuns(runs))
	}
	// Every bridge serves the same record.
	for _, b := range s.bridges {
		r, err := b.Run(context.Background(), run.ID)
		if err != nil || r.Outcome != runbooks.OutcomeRecovered {
			t.Errorf("%s: run %s: %v %v", b.Name, run.ID, r, err)
		}
	}
}

// scrapeSum sums the samples of metric whose label set contains every one
// of sels.
func scrapeSum(url, metric string, sels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	code, b, err := harness.Do(ctx, http.MethodGet, url, nil, nil)
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("GET %s: %d", url, code)
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) || !containsAll(line, sels) {
			continue
		}
		rest := line[len(metric):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// ---- (f) a pool's active agent is killed while configs flow.

const poolName = "e2e-pool"

var poolDevices = []string{"sw-1", "sw-2", "sw-3"}

func poolHCL(s *stack) string {
	var b strings.Builder
	for _, id := range []string{"cfg-1", "cfg-2"} {
		metrics := fmt.Sprintf("127.0.0.1:%d", s.port("metrics:"+id))
		s.addTarget("medic-agent", metrics)
		fmt.Fprintf(&b, `agent %q {
  node     = %q
  command  = %s
  workdir  = %q
  watchdog = false
  probe "http" {
    url      = %q
    timeout  = "400ms"
    interval = "500ms"
  }
}
`, id, nodeName, hclList([]string{bins.Medic, "agent",
			"--config.file=" + s.dir, "--redis.url=" + s.redis.URL(),
			"--pool=" + poolName, "--agent.id=" + id,
			"--web.listen-address=" + metrics, "--log.level=debug",
		}), s.workdir(id), "http://"+metrics+"/-/healthy")
	}
	fmt.Fprintf(&b, `pool %q {
  agents         = ["cfg-1", "cfg-2"]
  check_interval = "500ms"
  device_url     = %q
}

runbook "e2e-pool-switchover" {
  match {
    alertname = "MedicPoolAgentDown"
    pool      = %q
  }
  switchover {
    pool = alert.labels.pool
  }
}
`, poolName, s.devices.Template(), poolName)
	fmt.Fprintf(&b, `runbook "e2e-pool-restart" {
  matchers = ["alertname=\"MedicAgentDown\"", "agent=~\"cfg-.+\""]
  verify {
    attempts = 20
    interval = "250ms"
  }
  budget {
    restarts = 10
    window   = "1h"
  }
}
`)
	return b.String()
}

// poolState is GET /api/v1/pools/{pool}.
type poolState struct {
	Agent       string `json:"agent"`
	Lock        bool   `json:"lock"`
	Epoch       int64  `json:"epoch"`
	Backlog     int64  `json:"backlog"`
	Buffer      int64  `json:"buffer"`
	Switchovers int64  `json:"switchovers"`
}

func (s *stack) pool(t testing.TB) poolState {
	t.Helper()
	var st poolState
	if err := s.bridges[0].GetJSON(context.Background(), "/api/v1/pools/"+poolName, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// publisher publishes configs round-robin over the devices until stopped
// and remembers what each device should get, in order.
type publisher struct {
	s         *stack
	mu        sync.Mutex
	published map[string][]string
	errs      []string
	stop      chan struct{}
	done      chan struct{}
}

func (s *stack) startPublisher(every time.Duration) *publisher {
	p := &publisher{s: s, published: map[string][]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-time.After(every):
			}
			dev := poolDevices[i%len(poolDevices)]
			p.publish(dev, i)
		}
	}()
	return p
}

func (p *publisher) publish(dev string, i int) {
	payload := fmt.Sprintf(`{"n":%d,"vlan":%d}`, i, 100+i%7)
	body, _ := json.Marshal(map[string]any{"device": dev, "payload": json.RawMessage(payload)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Hold the lock across the request: seqs are per device and the
	// expected order is the order of acceptance.
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.s.bridges[i%len(p.s.bridges)]
	code, resp, err := harness.Do(ctx, http.MethodPost, b.URL+"/api/v1/pools/"+poolName+"/configs",
		http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + p.s.token}}, body)
	if err != nil || code/100 != 2 {
		p.errs = append(p.errs, fmt.Sprintf("publish %s #%d: %d %s %v", dev, i, code, resp, err))
		return
	}
	var r struct {
		Seq int64 `json:"seq"`
	}
	_ = json.Unmarshal(resp, &r)
	if want := int64(len(p.published[dev]) + 1); r.Seq != want {
		p.errs = append(p.errs, fmt.Sprintf("publish %s #%d: seq %d, want %d", dev, i, r.Seq, want))
	}
	p.published[dev] = append(p.published[dev], payload)
}

func (p *publisher) finish() (map[string][]string, []string) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.published, p.errs
}

func (p *publisher) errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.published {
		n += len(v)
	}
	return n
}

func poolSwitchover(t *testing.T, s *stack) {
	for _, id := range []string{"cfg-1", "cfg-2"} {
		harness.Eventually(t, 30*time.Second, 100*time.Millisecond, id+" up", func() (bool, string) {
			v, ok := s.query(fmt.Sprintf(`medic_agent_up{agent=%q} * medic_agent_probe_success{agent=%q}`, id, id))
			return ok && v == 1, fmt.Sprint(v, ok)
		})
	}
	pub := s.startPublisher(15 * time.Millisecond)
	defer func() {
		if pub != nil {
			pub.finish()
		}
	}()
	var first poolState
	harness.Eventually(t, 20*time.Second, 100*time.Millisecond, "pool active with deliveries", func() (bool, string) {
		first = s.pool(t)
		return first.Agent != "" && !first.Lock && s.devices.AppliedTotal() >= 10,
			fmt.Sprintf("%+v applied %d, published %d, errors %v", first, s.devices.AppliedTotal(), pub.count(), pub.errors())
	})
	victim := first.Agent
	other := map[string]string{"cfg-1": "cfg-2", "cfg-2": "cfg-1"}[victim]
	if other == "" {
		t.Fatalf("active agent %q is not one of the pool's", victim)
	}
	pidBefore := agentPIDFromNode(t, s, victim)
	killPID(t, pidBefore)
	killedAt := time.Now()
	published := pub.count()

	var after poolState
	harness.Eventually(t, 20*time.Second, 50*time.Millisecond, "switchover to "+other, func() (bool, string) {
		after = s.pool(t)
		return after.Agent == other && !after.Lock && after.Epoch > first.Epoch, fmt.Sprintf("%+v", after)
	})
	t.Logf("switchover %s → %s in %s (epoch %d → %d)", victim, other, time.Since(killedAt).Round(time.Millisecond), first.Epoch, after.Epoch)
	// Keep publishing a while on the new agent, then stop.
	harness.Eventually(t, 10*time.Second, 50*time.Millisecond, "configs flowing after the switchover", func() (bool, string) {
		return pub.count() > published+30, fmt.Sprint(pub.count())
	})
	want, errs := pub.finish()
	pub = nil
	for _, e := range errs {
		t.Error(e)
	}
	total := 0
	for _, v := range want {
		total += len(v)
	}
	harness.Eventually(t, 20*time.Second, 100*time.Millisecond, "every config applied", func() (bool, string) {
		return s.devices.AppliedTotal() == int64(total), fmt.Sprintf("%d of %d", s.devices.AppliedTotal(), total)
	})
	for _, v := range s.devices.Check(want) {
		t.Error(v)
	}
	harness.Eventually(t, 10*time.Second, 100*time.Millisecond, "backlog drained", func() (bool, string) {
		st := s.pool(t)
		return st.Backlog == 0 && st.Buffer == 0, fmt.Sprintf("%+v", st)
	})

	// The runbooks: the pool was switched away from the victim (by the
	// switchover runbook, or already by the coordinator's own check) and
	// the victim was restarted.
	sw := s.waitRun(t, victim, 30*time.Second, func(r runbooks.RunRecord) bool {
		return r.Runbook == "e2e-pool-switchover" && r.Outcome != ""
	})
	if sw.Outcome != runbooks.OutcomeSwitched {
		t.Errorf("switchover run: %s", summarizeRuns([]runbooks.RunRecord{sw}))
	}
	s.waitRun(t, victim, 30*time.Second, func(r runbooks.RunRecord) bool {
		return r.Runbook == "e2e-pool-restart" && r.Outcome == runbooks.OutcomeRecovered
	})
	if pid := agentPIDFromNode(t, s, victim); pid == pidBefore {
		t.Errorf("%s still has pid %d after kill and restart", victim, pid)
	}
	for _, name := range []string{"MedicPoolAgentDown", "MedicAgentDown"} {
		s.waitResolved(t, map[string]string{"alertname": name, "agent": victim}, 20*time.Second)
	}
	if v, ok := s.query(fmt.Sprintf(`sum(medic_dispatch_switchovers_total{pool=%q})`, poolName)); !ok || v < 1 {
		t.Errorf("medic_dispatch_switchovers_total = %v (%v)", v, ok)
	}
}

// agentPIDFromNode finds the pid of the `medic agent --agent.id=ID` that
// the stack's node supervises.
func agentPIDFromNode(t testing.TB, s *stack, id string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[0] == bins.Medic && args[1] == "agent" &&
			slices.Contains(args, "--agent.id="+id) && slices.Contains(args, "--config.file="+s.dir) {
			return pid
		}
	}
	t.Fatalf("no process for pool agent %s", id)
	return 0
}

func killPID(t testing.TB, pid int) {
	t.Helper()
	if err := procsig.Process(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}
