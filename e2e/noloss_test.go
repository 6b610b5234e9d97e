package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/runbooks"
)

// TestNoSilentLoss shows issue 14's cases 1–4 on real processes: one
// redis-server with appendfsync always, one `medic bridge`, one `medic
// node` (two execution slots) that the test SIGKILLs and brings back, test
// agents whose probe passes only once their repair ran, and an HTTP
// endpoint that receives the escalations (the page). Every accepted alert
// must end with a terminal outcome; none may end `skipped` by its own
// dead predecessor or by a lease nobody holds.
//
// The cases restart the node or Redis, so they run one after another.
func TestNoSilentLoss(t *testing.T) {
	began := time.Now()
	n := startNoLoss(t)
	t.Logf("no-loss stack up in %s", time.Since(began).Round(time.Millisecond))
	t.Run("node_restarted_mid_run", func(t *testing.T) { noLossNodeRestart(t, n) })
	t.Run("approval_across_restart", func(t *testing.T) { noLossApprovalRestart(t, n) })
	t.Run("waiting_is_not_working", func(t *testing.T) { noLossWaiting(t, n) })
	t.Run("redis_restart_lease", func(t *testing.T) { noLossRedisRestart(t, n) })
	t.Logf("TestNoSilentLoss wall time %s", time.Since(began).Round(time.Millisecond))
}

const nlNode = "nl-1"

// noLoss is the estate of TestNoSilentLoss. It reuses the safety
// helpers (alerts, webhook, run lookup) over its own configuration.
type noLoss struct {
	*safety
	bridge *harness.Bridge
	node   *harness.Node
	pages  *pager
}

// pager is the real HTTP endpoint escalations are posted to.
type pager struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []runbooks.Escalation
}

func startPager(t *testing.T) *pager {
	p := &pager{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var e runbooks.Escalation
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.got = append(p.got, e)
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// pageFor waits for the escalation of run id.
func (p *pager) pageFor(t testing.TB, id string, timeout time.Duration) runbooks.Escalation {
	t.Helper()
	var found runbooks.Escalation
	harness.Eventually(t, timeout, 100*time.Millisecond, "page for run "+id, func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, e := range p.got {
			if e.Run != nil && e.Run.ID == id {
				found = e
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pages, none for %s", len(p.got), id)
	})
	return found
}

func startNoLoss(t *testing.T) *noLoss {
	t.Helper()
	base := t.TempDir()
	s := &safety{base: base, dir: filepath.Join(base, "conf"), ports: map[string]int{}, agents: map[string]string{}, nodes: map[string]*harness.Node{}}
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.redis = redistest.Start(t, redistest.Options{AOF: true}) // appendfsync always
	s.rdb = s.redis.Client()
	var tokenFile string
	s.token, tokenFile = harness.Token(t)
	n := &noLoss{safety: s, pages: startPager(t)}
	if err := os.WriteFile(filepath.Join(s.dir, "noloss.hcl"), []byte(n.estate(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	n.bridge = harness.StartBridge(t, harness.BridgeOptions{
		Name: "nl-bridge", Medic: bins.Medic, ConfigPath: s.dir, RedisURL: s.redis.URL(), TokenFile: tokenFile,
	})
	s.bridges = []*harness.Bridge{n.bridge}
	// Two execution slots: case 3 parks two approvals on them.
	n.node = harness.StartNode(t, harness.NodeOptions{
		Name: nlNode, Medic: bins.Medic, ConfigPath: s.dir, RedisURL: s.redis.URL(), Extra: []string{"--node.jobs=2"},
	})
	s.nodes[nlNode] = n.node
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node log:\n%s", n.node.Tail(6000))
			t.Logf("bridge log:\n%s", n.bridge.Tail(3000))
		}
	})
	return n
}

// fixed is the file whose presence makes agent's probe pass; its repair
// writes it.
func (n *noLoss) fixed(agent string) string { return filepath.Join(n.workdir(agent), "fixed") }

// started is written by a slow repair when it begins.
func (n *noLoss) started(agent string) string { return filepath.Join(n.workdir(agent), "started") }

// agent renders a test agent on the node whose exec probe passes only
// when its "fixed" file exists: broken until a repair ran, across node
// restarts.
func (n *noLoss) agent(t testing.TB, name, probe string) string {
	n.mu.Lock()
	n.agents[name] = nlNode
	n.mu.Unlock()
	u := n.agentURL(t, name)
	argv := []string{bins.TestAgent, "--listen=" + strings.TrimPrefix(u, "http://"), "--name=" + name}
	return fmt.Sprintf(`agent %q {
  node     = %q
  command  = %s
  workdir  = %q
  watchdog = false
  probe "exec" {
    command  = [%q, %q]
    timeout  = "2s"
    interval = "5s"
  }
}
`, name, nlNode, hclList(argv), n.workdir(name), probe, n.fixed(name))
}

func (n *noLoss) estate(t testing.TB) string {
	probe := n.script(t, "nl-probe.sh", "test -f \"$1\"\n")
	fix := n.script(t, "nl-fix.sh", "touch \"$MEDIC_WORKDIR/fixed\"\n")
	// A 3 s repair that records when it began and fixes at its end: a
	// node killed meanwhile leaves the agent broken.
	slow := n.script(t, "nl-slow-fix.sh", "touch \"$MEDIC_WORKDIR/started\"\nsleep 3\ntouch \"$MEDIC_WORKDIR/fixed\"\n")
	// The same, but it fixes nothing: its run must escalate and page.
	slowNoFix := n.script(t, "nl-slow-nofix.sh", "touch \"$MEDIC_WORKDIR/started\"\nsleep 3\n")
	var b strings.Builder
	b.WriteString("# generated by TestNoSilentLoss\n\n")
	for _, a := range []string{"nl-restart", "nl-restart-esc", "nl-appr", "nl-wait-1", "nl-wait-2", "nl-auto", "nl-redis"} {
		b.WriteString(n.agent(t, a, probe))
	}
	rb := func(name, alertname, mode, repair string, attempts int) {
		modeLine := ""
		if mode != "" {
			modeLine = fmt.Sprintf("  mode         = %q\n  approval_ttl = \"3m\"\n", mode)
		}
		fmt.Fprintf(&b, `runbook %q {
  match {
    alertname = %q
  }
%s  cause "always" {
    when    = true
    repair  = [%q]
    timeout = "20s"
  }
  verify {
    attempts = %d
    interval = "250ms"
  }
  budget {
    restarts = 10
    window   = "1h"
  }
  escalate {
    webhook = %q
    timeout = "5s"
  }
}

`, name, alertname, modeLine, repair, attempts, n.pages.srv.URL)
	}
	rb("nl-slow", "NoLossSlow", "", slow, 40)
	rb("nl-slow-esc", "NoLossSlowEscalate", "", slowNoFix, 4)
	rb("nl-approve", "NoLossApprove", "approve", fix, 40)
	rb("nl-auto", "NoLossAuto", "", fix, 40)
	return b.String()
}

// killNode SIGKILLs the node (its agents and scripts die with it) and
// returns once it is gone.
func (n *noLoss) killNode(t testing.TB) {
	t.Helper()
	before := n.node.PID()
	n.node.Kill()
	if before <= 1 {
		t.Fatalf("node had no pid")
	}
}

// respawnNode brings the node back, as systemd's Restart= does.
func (n *noLoss) respawnNode(t testing.TB) {
	t.Helper()
	n.node.Respawn(t)
	harness.WaitHTTP(t, n.node.URL+"/-/healthy", 60*time.Second, n.node.Proc)
}

func waitFile(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, 50*time.Millisecond, path, func() (bool, string) {
		_, err := os.Stat(path)
		return err == nil, fmt.Sprint(err)
	})
}

func notSkipped(t testing.TB, r runbooks.RunRecord) {
	t.Helper()
	if r.Outcome == runbooks.OutcomeSkipped {
		t.Fatalf("run %s of %s ended skipped: %s (held by %q)", r.ID, r.Agent, r.Reason, r.HeldBy)
	}
}

// Case 1: the node is SIGKILLed during a 3 s repair and back 0.5 s later,
// well within the 60 s lease TTL. Each redelivered job takes over its
// own dead predecessor's lease and runs again: the fixable agent ends
// recovered, the unfixable one escalated with the page delivered.
func noLossNodeRestart(t *testing.T, n *noLoss) {
	fixable, broken := n.newAlert("NoLossSlow", "nl-restart"), n.newAlert("NoLossSlowEscalate", "nl-restart-esc")
	n.fire(t, n.bridge, fixable)
	n.fire(t, n.bridge, broken)
	waitFile(t, n.started("nl-restart"), 30*time.Second)
	waitFile(t, n.started("nl-restart-esc"), 30*time.Second)
	n.killNode(t)
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(n.fixed("nl-restart")); err == nil {
		t.Fatal("the repair finished although its node was killed: the case shows nothing")
	}
	n.respawnNode(t)

	r := n.finalRun(t, n.bridge, fixable, 90*time.Second)
	notSkipped(t, r)
	if r.Redelivered != runbooks.RedeliveredStartedAgain {
		t.Errorf("redelivered run: %s, want redelivered started_again", summarizeRuns([]runbooks.RunRecord{r}))
	}
	if st := stepNamed(r, "lease"); st == nil || !st.OK || !strings.Contains(st.Detail, "previous attempt") {
		t.Errorf("lease step %+v, want the takeover from the previous attempt", st)
	}
	switch r.Outcome {
	case runbooks.OutcomeRecovered:
		// The restarted node had started the agent: the run found it
		// alive, probe failing, and repaired it.
		if _, err := os.Stat(n.fixed("nl-restart")); err != nil {
			t.Errorf("recovered, but the agent was not repaired: %v", err)
		}
	case runbooks.OutcomeEscalated:
		// The run looked before the restarted node had started the agent:
		// not running, so restart alone (nothing to diagnose), which does
		// not fix it; a human is paged. (The node waits up to 3 s for its
		// agents before it takes jobs, so this is the loaded-machine path.)
		t.Logf("the redelivered run found the agent not yet started: %s", r.Reason)
		n.pages.pageFor(t, r.ID, 30*time.Second)
	default:
		t.Fatalf("redelivered run: %s, want recovered, or escalated and paged", summarizeRuns([]runbooks.RunRecord{r}))
	}

	e := n.finalRun(t, n.bridge, broken, 90*time.Second)
	notSkipped(t, e)
	if e.Outcome != runbooks.OutcomeEscalated || e.Redelivered != runbooks.RedeliveredStartedAgain {
		t.Fatalf("redelivered unfixable run: %s, want escalated, started_again", summarizeRuns([]runbooks.RunRecord{e}))
	}
	page := n.pages.pageFor(t, e.ID, 30*time.Second)
	if page.Run.Agent != "nl-restart-esc" || page.Reason == "" {
		t.Errorf("page %+v, want one naming nl-restart-esc and why", page)
	}
}

// Case 2: the node is SIGKILLed while a run waits for approval, and the
// operator approves while it is down. The approval answers 200 only
// because the run is still waiting: after the restart the redelivered run
// resumes its wait, finds the decision and acts. Deciding it again once
// it has ended is 409 naming its outcome.
func noLossApprovalRestart(t *testing.T, n *noLoss) {
	a := n.newAlert("NoLossApprove", "nl-appr")
	n.fire(t, n.bridge, a)
	pending := n.runOf(t, n.bridge, a, 60*time.Second, func(r runbooks.RunRecord) bool {
		return r.Outcome == runbooks.OutcomePendingApproval
	})
	n.killNode(t)
	code, body := n.call(t, n.bridge, http.MethodPost, "/api/v1/runs/"+pending.ID+"/approve", []byte(`{"by":"e2e","reason":"approved while the node was down"}`))
	if code != http.StatusOK {
		t.Fatalf("approve while the node is down: %d %s", code, body)
	}
	time.Sleep(500 * time.Millisecond)
	n.respawnNode(t)

	r := n.finalRun(t, n.bridge, a, 90*time.Second)
	notSkipped(t, r)
	if r.ID != pending.ID || r.Outcome != runbooks.OutcomeRecovered || r.Redelivered != runbooks.RedeliveredResumed {
		t.Fatalf("run after the restart: %s, want %s recovered, redelivered resumed", summarizeRuns([]runbooks.RunRecord{r}), pending.ID)
	}
	if st := stepNamed(r, "approval"); st == nil || !st.OK || !strings.Contains(st.Detail, "approved by e2e") {
		t.Errorf("approval step %+v, want e2e's approval", st)
	}
	if _, err := os.Stat(n.fixed("nl-appr")); err != nil {
		t.Errorf("approved repair did not run: %v", err)
	}
	code, body = n.call(t, n.bridge, http.MethodPost, "/api/v1/runs/"+pending.ID+"/reject", []byte(`{"by":"e2e"}`))
	if code != http.StatusConflict || !strings.Contains(string(body), "recovered") {
		t.Errorf("reject of an ended run: %d %s, want 409 naming recovered", code, body)
	}
}

// Case 3: two runs waiting for approval on a node with two execution
// slots do not hold an unrelated auto-mode alert back: it ends recovered
// while both still wait. Rejected afterwards, they end rejected.
func noLossWaiting(t *testing.T, n *noLoss) {
	w1, w2 := n.newAlert("NoLossApprove", "nl-wait-1"), n.newAlert("NoLossApprove", "nl-wait-2")
	n.fire(t, n.bridge, w1, w2)
	var waiting []runbooks.RunRecord
	for _, a := range []sfAlert{w1, w2} {
		waiting = append(waiting, n.runOf(t, n.bridge, a, 60*time.Second, func(r runbooks.RunRecord) bool {
			return r.Outcome == runbooks.OutcomePendingApproval
		}))
	}
	auto := n.newAlert("NoLossAuto", "nl-auto")
	n.fire(t, n.bridge, auto)
	r := n.finalRun(t, n.bridge, auto, 45*time.Second)
	if r.Outcome != runbooks.OutcomeRecovered {
		t.Fatalf("auto run beside two pending approvals: %s", summarizeRuns([]runbooks.RunRecord{r}))
	}
	for _, w := range waiting {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cur, err := n.bridge.Run(ctx, w.ID)
		cancel()
		if err != nil || cur.Outcome != runbooks.OutcomePendingApproval {
			t.Fatalf("waiting run %s: %v %v, want still pending when the auto run ended", w.ID, cur, err)
		}
		code, body := n.call(t, n.bridge, http.MethodPost, "/api/v1/runs/"+w.ID+"/reject", []byte(`{"by":"e2e"}`))
		if code != http.StatusOK {
			t.Fatalf("reject %s: %d %s", w.ID, code, body)
		}
	}
	for _, a := range []sfAlert{w1, w2} {
		if r := n.finalRun(t, n.bridge, a, 45*time.Second); r.Outcome != runbooks.OutcomeRejected {
			t.Errorf("rejected run: %s", summarizeRuns([]runbooks.RunRecord{r}))
		}
	}
}

// Case 4: Redis is SIGKILLed during a run and comes back (AOF, fsync
// always) after the run ended, so the run's lease release failed and the
// key survived. A new episode for the agent must not be skipped for the
// rest of the 60 s TTL: the release is retried when Redis is back, and a
// lease of this incarnation whose run has ended is taken over.
func noLossRedisRestart(t *testing.T, n *noLoss) {
	first := n.newAlert("NoLossSlow", "nl-redis")
	n.fire(t, n.bridge, first)
	waitFile(t, n.started("nl-redis"), 30*time.Second)
	n.redis.Kill()
	// The repair ends 3 s after it began, verify passes at once: the run
	// ends, and its lease release fails, while Redis is down.
	harness.Eventually(t, 90*time.Second, 100*time.Millisecond, "the run's lease release to fail while Redis is down", func() (bool, string) {
		return strings.Contains(n.node.Log(), "lease release failed"), "not yet"
	})
	n.redis.Restart()
	upAt := time.Now()

	r := n.finalRun(t, n.bridge, first, 60*time.Second)
	notSkipped(t, r)
	if r.Outcome != runbooks.OutcomeRecovered {
		t.Fatalf("run across the Redis restart: %s", summarizeRuns([]runbooks.RunRecord{r}))
	}
	// Broken again: a new episode.
	if err := os.Remove(n.fixed("nl-redis")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(n.started("nl-redis")); err != nil {
		t.Fatal(err)
	}
	second := n.newAlert("NoLossSlow", "nl-redis")
	n.fire(t, n.bridge, second)
	r2 := n.finalRun(t, n.bridge, second, 45*time.Second)
	notSkipped(t, r2)
	if r2.Outcome != runbooks.OutcomeRecovered {
		t.Fatalf("new episode after the Redis restart: %s", summarizeRuns([]runbooks.RunRecord{r2}))
	}
	if d := time.Since(upAt); d > 55*time.Second {
		t.Errorf("new episode took %s after Redis came back: it waited out the lease TTL", d)
	}
}
