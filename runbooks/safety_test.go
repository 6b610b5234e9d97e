package runbooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
)

// fleet is a fake of many agents: each is dead until restarted, a restart
// takes restartFor, and then the agent is healthy.
type fleet struct {
	mu         sync.Mutex
	alive      map[string]bool
	probeOK    map[string]bool
	usage      hcl.Usage
	restarts   map[string]int
	restartFor time.Duration
	inRestart  int
	peak       int
}

func newFleet() *fleet {
	return &fleet{alive: map[string]bool{}, probeOK: map[string]bool{}, restarts: map[string]int{}}
}

var _ Agents = (*fleet)(nil)

func (f *fleet) Alive(_ context.Context, a string) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.alive[a], "", nil
}

func (f *fleet) Probe(_ context.Context, a string) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.probeOK[a] {
		return true, "200 OK", nil
	}
	return false, "500", errors.New("probe failed")
}

func (f *fleet) Usage(context.Context, string) (hcl.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usage, nil
}

func (f *fleet) Restart(ctx context.Context, a string) error {
	f.mu.Lock()
	f.inRestart++
	f.peak = max(f.peak, f.inRestart)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inRestart--
		f.mu.Unlock()
	}()
	select {
	case <-time.After(f.restartFor):
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts[a]++
	f.alive[a], f.probeOK[a] = true, true
	return nil
}

func (f *fleet) set(a string, alive, probeOK bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alive[a], f.probeOK[a] = alive, probeOK
}

func (f *fleet) restartsOf(a string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restarts[a]
}

// node is one engine sharing the test's Redis, as one medic process.
func node(t *testing.T, store *controls.Store, name string, cfg *hcl.Config, agents Agents) *Engine {
	t.Helper()
	return New(Options{
		Config: func() *hcl.Config { return cfg }, Node: name, Agents: agents,
		Controls: store, Locker: NewRedisLocker(store.Client(), ""),
		LeaseTTL: 2 * time.Second, BackoffBase: -1,
		ApprovalPoll: 10 * time.Millisecond, ConcurrencyPoll: 10 * time.Millisecond,
	})
}

func sharedStore(t *testing.T) *controls.Store {
	return controls.New(redistest.Start(t, redistest.Options{}).Client(), "")
}

func agentAlert(agent string, extra ...string) alert.Alert {
	l := map[string]string{"alertname": "AgentDown", "agent": agent}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return alert.Alert{Labels: l, Status: "firing"}
}

func stepEnd(s Step) time.Time {
	return s.Started.Add(time.Duration(s.Duration * float64(time.Second)))
}

func stepOf(rec *RunRecord, name string) *Step {
	for i := range rec.Steps {
		if rec.Steps[i].Name == name {
			return &rec.Steps[i]
		}
	}
	return nil
}

// Twenty agents on two nodes fail at once; the runbook allows three runs
// of the same cluster at a time. Acting (from the slot to the end) never
// overlaps more than three times, and every run ends recovered or limited.
func TestConcurrencyFleetWide(t *testing.T) {
	store := sharedStore(t)
	var src strings.Builder
	for i := range 20 {
		fmt.Fprintf(&src, "agent \"a%02d\" {\n  node = \"n%d\"\n  command = [\"/bin/a\"]\n  labels = { cluster = \"eu1\" }\n}\n", i, i%2+1)
	}
	src.WriteString(`
runbook "restart" {
  match { alertname = "AgentDown" }
  concurrency {
    max   = 3
    key   = alert.labels.cluster
    wait  = "700ms"
    queue = 100
  }
}
`)
	cfg := loadConfig(t, src.String())
	agents := newFleet()
	agents.restartFor = 150 * time.Millisecond
	engines := []*Engine{node(t, store, "n1", cfg, agents), node(t, store, "n2", cfg, agents)}
	recs := make([]*RunRecord, 20)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i] = engines[i%2].Run(context.Background(), Request{Alert: agentAlert(fmt.Sprintf("a%02d", i), "cluster", "eu1")})
		}()
	}
	wg.Wait()

	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	count := map[string]int{}
	for _, rec := range recs {
		count[rec.Outcome]++
		switch rec.Outcome {
		case OutcomeRecovered:
			s := stepOf(rec, "concurrency")
			if s == nil || !s.OK {
				t.Fatalf("recovered without a slot: %+v", rec.Steps)
			}
			// The slot is held from the end of the concurrency step
			// until after the last step (it is released as the run
			// returns), so these intervals lie within the holds.
			last := rec.Steps[len(rec.Steps)-1]
			edges = append(edges, edge{stepEnd(*s), +1}, edge{stepEnd(last), -1})
		case OutcomeLimited:
			if !strings.Contains(rec.Reason, "concurrency limit of runbook restart: 3 at once for \"eu1\"") || stepOf(rec, "escalate") == nil {
				t.Errorf("limited run: %q %v", rec.Reason, stepNames(rec))
			}
			if agents.restartsOf(rec.Agent) != 0 {
				t.Errorf("limited run of %s restarted it", rec.Agent)
			}
		default:
			t.Errorf("run of %s: %s %q", rec.Agent, rec.Outcome, rec.Reason)
		}
	}
	// Ends sort before starts at the same instant: a slot released and
	// taken in the same millisecond is not an overlap.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta
		}
		return edges[i].at.Before(edges[j].at)
	})
	in, peak := 0, 0
	for _, e := range edges {
		in += e.delta
		peak = max(peak, in)
	}
	t.Logf("outcomes %v, peak %d, peak of restarts %d", count, peak, agents.peak)
	if peak > 3 || peak == 0 {
		t.Errorf("peak concurrency %d, want 1..3", peak)
	}
	if count[OutcomeRecovered] < 3 {
		t.Errorf("only %d recovered", count[OutcomeRecovered])
	}
	if n, _ := store.InUse(context.Background(), controls.Limit{Runbook: "restart", Key: "eu1"}, time.Now()); n != 0 {
		t.Errorf("%d slots still held", n)
	}
}

// max_ratio counts the agents of the same cluster: 0.25 of 4 is 1.
func TestConcurrencyMaxRatioInProcess(t *testing.T) {
	cfg := loadConfig(t, `
agent "a1" {
  command = ["/bin/a"]
  labels = { cluster = "eu1" }
}
agent "a2" {
  command = ["/bin/a"]
  labels = { cluster = "eu1" }
}
agent "a3" {
  command = ["/bin/a"]
  labels = { cluster = "eu1" }
}
agent "a4" {
  command = ["/bin/a"]
  labels = { cluster = "eu1" }
}
runbook "restart" {
  match { alertname = "AgentDown" }
  concurrency {
    max_ratio = 0.25
    key       = alert.labels.cluster
    wait      = "50ms"
  }
}
`)
	agents := newFleet()
	agents.restartFor = 300 * time.Millisecond
	// No Controls: the limit holds within this process.
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n", Agents: agents, BackoffBase: -1})
	recs := make([]*RunRecord, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i] = e.Run(context.Background(), Request{Alert: agentAlert(fmt.Sprintf("a%d", i+1), "cluster", "eu1")})
		}()
	}
	wg.Wait()
	got := []string{recs[0].Outcome, recs[1].Outcome}
	slices.Sort(got)
	if !slices.Equal(got, []string{OutcomeLimited, OutcomeRecovered}) {
		t.Fatalf("outcomes %v (%q, %q)", got, recs[0].Reason, recs[1].Reason)
	}
}

const oneAgent = `
agent "ops" {
  node    = "n1"
  command = ["/bin/ops"]
  probe "tcp" {
    address = "127.0.0.1:1"
  }
}
`

// One agent, two engine processes, one budget: two restarts in the hour,
// whichever engine made them, then escalation.
func TestSharedBudgetAcrossEngines(t *testing.T) {
	store := sharedStore(t)
	cfg := loadConfig(t, oneAgent+`
runbook "restart" {
  match { alertname = "AgentDown" }
  budget {
    restarts = 2
    window   = "1h"
  }
}
`)
	agents := newFleet()
	a, b := node(t, store, "n1", cfg, agents), node(t, store, "n1", cfg, agents)
	for i, e := range []*Engine{a, b, a} {
		agents.set("ops", false, false)
		rec := e.Run(context.Background(), Request{Alert: agentAlert("ops")})
		want := OutcomeRecovered
		if i == 2 {
			want = OutcomeEscalated
		}
		if rec.Outcome != want {
			t.Fatalf("run %d: %s %q", i, rec.Outcome, rec.Reason)
		}
		if i == 2 && rec.Reason != "restart budget exhausted: 2 in 1h" {
			t.Fatalf("reason %q", rec.Reason)
		}
	}
	if n := agents.restartsOf("ops"); n != 2 {
		t.Fatalf("%d restarts", n)
	}
}

func TestCircuitTripsAndResets(t *testing.T) {
	store := sharedStore(t)
	sink := newWebhookSink(t)
	cfg := loadConfig(t, oneAgent+fmt.Sprintf(`
runbook "restart" {
  match { alertname = "AgentDown" }
  circuit {
    max_runs = 2
    window   = "1h"
  }
  budget {
    restarts = 100
    window   = "1h"
  }
  escalate { webhook = %q }
}
`, sink.srv.URL))
	agents := newFleet()
	engines := []*Engine{node(t, store, "n1", cfg, agents), node(t, store, "n1", cfg, agents)}
	run := func(i int) *RunRecord {
		agents.set("ops", false, false)
		return engines[i%2].Run(context.Background(), Request{Alert: agentAlert("ops")})
	}
	for i := range 2 {
		if rec := run(i); rec.Outcome != OutcomeRecovered {
			t.Fatalf("run %d: %s %q", i, rec.Outcome, rec.Reason)
		}
	}
	rec := run(2)
	if rec.Outcome != OutcomeCircuitOpen || !strings.HasPrefix(rec.Reason, "circuit open: 2 runs for agent ops within 1h") {
		t.Fatalf("3rd run: %s %q", rec.Outcome, rec.Reason)
	}
	if got := sink.Got(); len(got) != 1 || got[0].Run.Outcome != OutcomeCircuitOpen {
		t.Fatalf("escalations %+v", got)
	}
	if agents.restartsOf("ops") != 2 {
		t.Fatalf("the open circuit restarted: %d", agents.restartsOf("ops"))
	}
	// A healthy agent is not a remediation: it does not hit the circuit.
	agents.set("ops", true, true)
	if rec := engines[0].Run(context.Background(), Request{Alert: agentAlert("ops")}); rec.Outcome != OutcomeHealthy {
		t.Fatalf("healthy run: %s", rec.Outcome)
	}
	if err := store.ResetAgent(context.Background(), "n1", "ops"); err != nil {
		t.Fatal(err)
	}
	if rec := run(3); rec.Outcome != OutcomeRecovered {
		t.Fatalf("after reset: %s %q", rec.Outcome, rec.Reason)
	}
}

// Shadow mode samples and diagnoses and executes nothing: the repair
// script would have written a file, the restart would have counted.
func TestShadowExecutesNothing(t *testing.T) {
	dir := t.TempDir()
	repair := writeScript(t, dir, "repair.sh", "touch "+dir+"/repaired\n")
	cfg := loadConfig(t, oneAgent+fmt.Sprintf(`
runbook "restart" {
  match { alertname = "AgentDown" }
  mode = "shadow"
  cause "memory" {
    when   = usage.memory > agent.thresholds.memory
    repair = [%q]
  }
}
`, repair))
	agents := newFleet()
	agents.usage = hcl.Usage{Memory: 0.95}
	agents.set("ops", true, false)
	e := node(t, sharedStore(t), "n1", cfg, agents)
	rec := e.Run(context.Background(), Request{Alert: agentAlert("ops")})
	if rec.Outcome != OutcomeShadowed || rec.Reason != "shadow mode: would repair memory and restart; nothing was executed" {
		t.Fatalf("%s %q", rec.Outcome, rec.Reason)
	}
	if _, err := os.Stat(filepath.Join(dir, "repaired")); !os.IsNotExist(err) {
		t.Fatalf("the repair ran: %v", err)
	}
	if agents.restartsOf("ops") != 0 {
		t.Fatal("the agent was restarted")
	}
	if rec.Usage == nil || rec.Usage.Memory != 0.95 || !slices.Equal(rec.Causes, []string{"memory"}) {
		t.Errorf("usage %+v causes %v", rec.Usage, rec.Causes)
	}
	if s := stepOf(rec, "repair:memory"); s == nil || s.Detail != fmt.Sprintf("would run [%q] (shadow mode)", repair) || s.ExitCode != nil {
		t.Errorf("repair step %+v", s)
	}
	if s := stepOf(rec, "restart"); s == nil || !strings.HasPrefix(s.Detail, "would restart") {
		t.Errorf("restart step %+v", s)
	}
}

func approveConfig(t *testing.T, ttl string) *hcl.Config {
	return loadConfig(t, oneAgent+fmt.Sprintf(`
runbook "restart" {
  match { alertname = "AgentDown" }
  mode         = "approve"
  approval_ttl = %q
}
`, ttl))
}

// runPending starts a run and returns once it is pending, with its
// pending_approval record, and a channel with the final record.
func runPending(t *testing.T, e *Engine, store *controls.Store) (*RunRecord, <-chan *RunRecord) {
	t.Helper()
	progress := make(chan *RunRecord, 4)
	done := make(chan *RunRecord, 1)
	go func() {
		done <- e.Run(context.Background(), Request{Alert: agentAlert("ops"), Progress: func(r *RunRecord) { progress <- r }})
	}()
	select {
	case p := <-progress:
		ids, err := store.Pending(context.Background(), time.Now())
		if err != nil || !slices.Contains(ids, p.ID) {
			t.Fatalf("pending %v (%v), want %s", ids, err, p.ID)
		}
		return p, done
	case r := <-done:
		t.Fatalf("run ended without waiting: %s %q", r.Outcome, r.Reason)
	case <-time.After(5 * time.Second):
		t.Fatal("no pending record")
	}
	return nil, nil
}

func TestApproval(t *testing.T) {
	ctx := context.Background()
	store := sharedStore(t)
	agents := newFleet()
	e := node(t, store, "n1", approveConfig(t, "5s"), agents)

	t.Run("approved", func(t *testing.T) {
		agents.set("ops", true, false)
		p, done := runPending(t, e, store)
		if p.Outcome != OutcomePendingApproval || stepOf(p, "diagnose") == nil || agents.restartsOf("ops") != 0 {
			t.Fatalf("pending record %s %v", p.Outcome, stepNames(p))
		}
		if err := store.Decide(ctx, Decision(p.ID, true, "alice")); err != nil {
			t.Fatal(err)
		}
		if err := store.Decide(ctx, Decision(p.ID, false, "bob")); !errors.Is(err, controls.ErrDecided) {
			t.Fatalf("second decision: %v", err)
		}
		rec := <-done
		if rec.Outcome != OutcomeRecovered || agents.restartsOf("ops") != 1 {
			t.Fatalf("%s %q, %d restarts", rec.Outcome, rec.Reason, agents.restartsOf("ops"))
		}
		if s := stepOf(rec, "approval"); s == nil || !s.OK || s.Detail != "approved by alice" {
			t.Fatalf("approval step %+v", s)
		}
	})
	t.Run("approved-but-healthy-by-then", func(t *testing.T) {
		agents.set("ops", true, false)
		p, done := runPending(t, e, store)
		agents.set("ops", true, true)
		if err := store.Decide(ctx, Decision(p.ID, true, "alice")); err != nil {
			t.Fatal(err)
		}
		if rec := <-done; rec.Outcome != OutcomeHealthy || agents.restartsOf("ops") != 1 {
			t.Fatalf("%s %q", rec.Outcome, rec.Reason)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		agents.set("ops", false, false)
		p, done := runPending(t, e, store)
		if err := store.Decide(ctx, controls.Decision{RunID: p.ID, Approve: false, By: "bob", Reason: "change freeze"}); err != nil {
			t.Fatal(err)
		}
		rec := <-done
		if rec.Outcome != OutcomeRejected || rec.Reason != "rejected by bob: change freeze; nothing acted" || agents.restartsOf("ops") != 1 {
			t.Fatalf("%s %q", rec.Outcome, rec.Reason)
		}
	})
	t.Run("expired", func(t *testing.T) {
		e := node(t, store, "n1", approveConfig(t, "800ms"), agents)
		agents.set("ops", false, false)
		p, done := runPending(t, e, store)
		rec := <-done
		if rec.Outcome != OutcomeExpired || rec.Reason != "no operator approved or rejected the run within approval_ttl 800ms; nothing acted" {
			t.Fatalf("%s %q", rec.Outcome, rec.Reason)
		}
		if err := store.Decide(ctx, Decision(p.ID, true, "late")); !errors.Is(err, controls.ErrNotPending) {
			t.Fatalf("late decision: %v", err)
		}
		if agents.restartsOf("ops") != 1 {
			t.Fatal("an expired run acted")
		}
	})
	t.Run("without-controls", func(t *testing.T) {
		e := New(Options{Config: func() *hcl.Config { return approveConfig(t, "1s") }, Node: "n1", Agents: agents})
		agents.set("ops", false, false)
		if rec := e.Run(ctx, Request{Alert: agentAlert("ops")}); rec.Outcome != OutcomeFailed || !strings.Contains(rec.Reason, "approve mode needs") {
			t.Fatalf("%s %q", rec.Outcome, rec.Reason)
		}
	})
}

// Decision builds a decision.
func Decision(id string, approve bool, by string) controls.Decision {
	return controls.Decision{RunID: id, Approve: approve, By: by}
}

func TestPause(t *testing.T) {
	ctx := context.Background()
	store := sharedStore(t)
	cfg := loadConfig(t, oneAgent+`
runbook "restart" {
  match { alertname = "AgentDown" }
}
`)
	agents := newFleet()
	reg := prometheus.NewPedanticRegistry()
	e := New(Options{
		Config: func() *hcl.Config { return cfg }, Node: "n1", Agents: agents, Controls: store,
		BackoffBase: -1, Registerer: reg,
	})
	for _, p := range []controls.Pause{
		{Runbook: "restart", By: "alice", Reason: "deploy"},
		{By: "bob"},
	} {
		if err := store.Pause(ctx, p); err != nil {
			t.Fatal(err)
		}
		agents.set("ops", false, false)
		rec := e.Run(ctx, Request{Alert: agentAlert("ops")})
		if rec.Outcome != OutcomePaused || agents.restartsOf("ops") != 0 || stepOf(rec, "liveness") != nil {
			t.Fatalf("paused run: %s %q %v", rec.Outcome, rec.Reason, stepNames(rec))
		}
		t.Log(rec.Reason)
		if _, err := store.Resume(ctx, p.Runbook); err != nil {
			t.Fatal(err)
		}
	}
	if rec := e.Run(ctx, Request{Alert: agentAlert("ops")}); rec.Outcome != OutcomeRecovered {
		t.Fatalf("resumed: %s %q", rec.Outcome, rec.Reason)
	}
	want := `
# HELP medic_remediations_total Remediation runs by runbook and outcome.
# TYPE medic_remediations_total counter
medic_remediations_total{outcome="paused",runbook="restart"} 2
medic_remediations_total{outcome="recovered",runbook="restart"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "medic_remediations_total"); err != nil {
		t.Error(err)
	}
}

// fakeAlertmanager records the v2 API calls medic makes.
type fakeAlertmanager struct {
	mu      sync.Mutex
	posted  []PostableSilence
	deleted []string
	fail    bool
	srv     *httptest.Server
}

func newFakeAlertmanager(t *testing.T) *fakeAlertmanager {
	f := &fakeAlertmanager{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v2/silences":
			var s PostableSilence
			body, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(body, &s); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f.posted = append(f.posted, s)
			fmt.Fprintf(w, `{"silenceID":"sil-%d"}`, len(f.posted))
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/v2/silence/"):
			f.deleted = append(f.deleted, strings.TrimPrefix(r.URL.Path, "/api/v2/silence/"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func TestSilence(t *testing.T) {
	ctx := context.Background()
	am := newFakeAlertmanager(t)
	cfg := loadConfig(t, oneAgent+fmt.Sprintf(`
runbook "restart" {
  match { alertname = "AgentDown" }
  silence {
    alertmanager = %q
    duration     = "10m"
    timeout      = "2s"
  }
  budget {
    restarts = 1
    window   = "1h"
  }
}
`, am.srv.URL))
	agents := newFleet()
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n1", Agents: agents, BackoffBase: -1})

	agents.set("ops", false, false)
	rec := e.Run(ctx, Request{Alert: agentAlert("ops", "cluster", "eu1", "empty", "")})
	if rec.Outcome != OutcomeRecovered {
		t.Fatalf("%s %q", rec.Outcome, rec.Reason)
	}
	if s := stepOf(rec, "silence"); s == nil || !s.OK || !strings.Contains(s.Detail, "as sil-1") {
		t.Fatalf("silence step %+v", s)
	}
	if s := stepOf(rec, "unsilence"); s == nil || !s.OK {
		t.Fatalf("unsilence step %+v", s)
	}
	am.mu.Lock()
	p := am.posted[0]
	want := []SilenceMatcher{{"agent", "ops", false, true}, {"alertname", "AgentDown", false, true}, {"cluster", "eu1", false, true}}
	if !slices.Equal(p.Matchers, want) || p.CreatedBy != "medic" || !strings.Contains(p.Comment, rec.ID) || p.EndsAt.Sub(p.StartsAt) != 10*time.Minute {
		t.Errorf("posted %+v", p)
	}
	if !slices.Equal(am.deleted, []string{"sil-1"}) {
		t.Errorf("deleted %v", am.deleted)
	}
	am.mu.Unlock()

	// Escalated (budget spent): the silence stays until it ends.
	agents.set("ops", false, false)
	if rec := e.Run(ctx, Request{Alert: agentAlert("ops")}); rec.Outcome != OutcomeEscalated || stepOf(rec, "unsilence") != nil {
		t.Fatalf("%s %v", rec.Outcome, stepNames(rec))
	}
	am.mu.Lock()
	if len(am.posted) != 2 || len(am.deleted) != 1 {
		t.Errorf("posted %d deleted %v", len(am.posted), am.deleted)
	}
	am.fail = true
	am.mu.Unlock()

	// Alertmanager failing is a recorded step, not a failed run.
	e2 := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n1", Agents: agents, BackoffBase: -1})
	agents.set("ops", false, false)
	rec = e2.Run(ctx, Request{Alert: agentAlert("ops")})
	if s := stepOf(rec, "silence"); rec.Outcome != OutcomeRecovered || s == nil || s.OK || !strings.Contains(s.Error, "500") {
		t.Fatalf("%s %+v", rec.Outcome, s)
	}
}

func TestRedact(t *testing.T) {
	dir := t.TempDir()
	repair := writeScript(t, dir, "repair.sh", "echo 'connecting with password=hunter2 and Token: abc.def'\nexit 1\n")
	sink := newWebhookSink(t)
	cfg := loadConfig(t, oneAgent+fmt.Sprintf(`
runbook "restart" {
  match { alertname = "AgentDown" }
  redact = ["(?i)password=\\S+", "Token: [a-z.]+"]
  cause "always" {
    when   = true
    repair = [%q]
  }
  verify { attempts = 1 }
  escalate { webhook = %q }
}
`, repair, sink.srv.URL))
	agents := &fakeAgents{alive: true, stillBroken: true}
	e := New(Options{Config: func() *hcl.Config { return cfg }, Node: "n1", Agents: agents, BackoffBase: -1})
	a := agentAlert("ops")
	a.Annotations = map[string]string{"description": "log says password=hunter2"}
	rec := e.Run(context.Background(), Request{Alert: a})
	if rec.Outcome != OutcomeEscalated {
		t.Fatalf("%s %q", rec.Outcome, rec.Reason)
	}
	s := stepOf(rec, "repair:always")
	if s == nil || s.Output != "connecting with [REDACTED] and [REDACTED]\n" {
		t.Fatalf("repair output %q", s.Output)
	}
	b, _ := json.Marshal(sink.Got())
	if strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "abc.def") || !strings.Contains(string(b), "[REDACTED]") {
		t.Fatalf("escalation leaks: %s", b)
	}
}

// A pause reaches runs already waiting for a concurrency slot: the one
// holding the slot finishes, the waiter ends paused and restarts nothing.
func TestPauseReachesRunsWaitingForASlot(t *testing.T) {
	ctx := context.Background()
	store := sharedStore(t)
	cfg := loadConfig(t, `
agent "a1" {
  node    = "n1"
  command = ["/bin/a"]
}
agent "a2" {
  node    = "n1"
  command = ["/bin/a"]
}
runbook "restart" {
  match { alertname = "AgentDown" }
  concurrency {
    max  = 1
    wait = "5s"
  }
}
`)
	agents := newFleet()
	agents.restartFor = 600 * time.Millisecond
	e := node(t, store, "n1", cfg, agents)
	first := make(chan *RunRecord, 1)
	go func() { first <- e.Run(ctx, Request{Alert: agentAlert("a1")}) }()
	// a1's run holds the slot (it is restarting) before a2's run starts.
	deadline := time.Now().Add(5 * time.Second)
	for {
		agents.mu.Lock()
		busy := agents.inRestart > 0
		agents.mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a1 never restarted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := make(chan *RunRecord, 1)
	go func() { second <- e.Run(ctx, Request{Alert: agentAlert("a2")}) }()
	time.Sleep(100 * time.Millisecond) // a2 waits for the slot
	if err := store.Pause(ctx, controls.Pause{By: "alice", Reason: "storm"}); err != nil {
		t.Fatal(err)
	}
	if rec := <-first; rec.Outcome != OutcomeRecovered {
		t.Errorf("slot holder: %s %q", rec.Outcome, rec.Reason)
	}
	rec := <-second
	if rec.Outcome != OutcomePaused || agents.restartsOf("a2") != 0 {
		t.Fatalf("waiter: %s %q, %d restarts of a2; want paused and none", rec.Outcome, rec.Reason, agents.restartsOf("a2"))
	}
	if s := stepOf(rec, "concurrency"); s == nil || !s.OK {
		t.Errorf("waiter never had the slot: %v", stepNames(rec))
	}
}

// Rejected approve-mode runs never acted, so they do not count against the
// circuit; approved ones do, and an open circuit is reported before anyone
// is asked to approve.
func TestCircuitCountsOnlyApprovedRuns(t *testing.T) {
	ctx := context.Background()
	store := sharedStore(t)
	agents := newFleet()
	cfg := loadConfig(t, oneAgent+`
runbook "restart" {
  match { alertname = "AgentDown" }
  mode = "approve"
  circuit {
    max_runs = 1
    window   = "1h"
  }
}
`)
	e := node(t, store, "n1", cfg, agents)
	for _, by := range []string{"bob", "carol"} {
		agents.set("ops", false, false)
		p, done := runPending(t, e, store)
		if err := store.Decide(ctx, Decision(p.ID, false, by)); err != nil {
			t.Fatal(err)
		}
		if rec := <-done; rec.Outcome != OutcomeRejected {
			t.Fatalf("rejected by %s: %s %q", by, rec.Outcome, rec.Reason)
		}
	}
	agents.set("ops", false, false)
	p, done := runPending(t, e, store)
	if err := store.Decide(ctx, Decision(p.ID, true, "alice")); err != nil {
		t.Fatal(err)
	}
	if rec := <-done; rec.Outcome != OutcomeRecovered {
		t.Fatalf("first approved run, after two rejected: %s %q", rec.Outcome, rec.Reason)
	}
	agents.set("ops", false, false)
	rec := e.Run(ctx, Request{Alert: agentAlert("ops")})
	if rec.Outcome != OutcomeCircuitOpen || stepOf(rec, "approval") != nil {
		t.Fatalf("second approved-mode run: %s %q %v, want circuit_open without asking", rec.Outcome, rec.Reason, stepNames(rec))
	}
}

// A run waiting for approval parks (Request.Park) and, when its node
// stops, stays pending; decided while the node is down, the same run in
// the node's next incarnation takes over its own lease, resumes its wait
// with the first deadline, finds the decision and acts.
func TestApprovalResumedAfterNodeRestart(t *testing.T) {
	ctx := context.Background()
	store := sharedStore(t)
	agents := newFleet()
	agents.set("ops", true, false)
	cfg := approveConfig(t, "1m")
	incarnation := func(inc string) *Engine {
		return New(Options{
			Config: func() *hcl.Config { return cfg }, Node: "n1", Agents: agents, Incarnation: inc,
			Controls: store, Locker: NewRedisLocker(store.Client(), "").WithIncarnation("n1", inc),
			LeaseTTL: time.Minute, BackoffBase: -1, ApprovalPoll: 10 * time.Millisecond,
		})
	}
	var parks, unparks atomic.Int32
	park := func() func() {
		parks.Add(1)
		return func() { unparks.Add(1) }
	}
	first := incarnation("inc-1")
	runCtx, stop := context.WithCancel(ctx)
	progress := make(chan *RunRecord, 4)
	done := make(chan *RunRecord, 1)
	go func() {
		done <- first.Run(runCtx, Request{ID: "job-1", Alert: agentAlert("ops"), Park: park, Progress: func(r *RunRecord) { progress <- r }})
	}()
	var p *RunRecord
	select {
	case p = <-progress:
	case <-time.After(10 * time.Second):
		t.Fatal("no pending record")
	}
	waitUntil(t, func() bool { return parks.Load() == 1 })
	// The node shuts down (its runs are cancelled), and its lease is left
	// behind as a SIGKILL would leave it.
	stop()
	if rec := <-done; rec.Outcome != OutcomeFailed {
		t.Fatalf("cancelled run: %s %q", rec.Outcome, rec.Reason)
	}
	if err := store.Client().Set(ctx, "medic:lease:n1:ops", "job-1/inc-1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if ids, _ := store.Pending(ctx, time.Now()); !slices.Contains(ids, p.ID) {
		t.Fatalf("the approval request of a run cancelled by shutdown was withdrawn: pending %v", ids)
	}
	if err := store.Decide(ctx, Decision(p.ID, true, "alice")); err != nil {
		t.Fatalf("approve while the node is down: %v", err)
	}
	second := incarnation("inc-2")
	if err := second.opts.Locker.(*RedisLocker).Publish(ctx); err != nil {
		t.Fatal(err)
	}
	rec := second.Run(ctx, Request{ID: "job-1", Alert: agentAlert("ops"), Park: park, Redelivered: true})
	if rec.Outcome != OutcomeRecovered || rec.Redelivered != RedeliveredResumed || agents.restartsOf("ops") != 1 {
		t.Fatalf("resumed run: %s %q redelivered=%q restarts=%d", rec.Outcome, rec.Reason, rec.Redelivered, agents.restartsOf("ops"))
	}
	if s := stepOf(rec, "approval"); s == nil || s.Detail != "approved by alice" {
		t.Errorf("approval step %+v", s)
	}
	if parks.Load() != 2 || unparks.Load() != 2 {
		t.Errorf("parked %d, unparked %d times; want each wait parked once", parks.Load(), unparks.Load())
	}
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A run queued for a concurrency slot parks (gives its node execution
// slot back) once, and takes it again when it gets the slot; a run that
// gets a slot at once never parks.
func TestConcurrencyWaitParks(t *testing.T) {
	store := sharedStore(t)
	cfg := loadConfig(t, `
agent "a1" {
  command = ["/bin/a"]
}
agent "a2" {
  command = ["/bin/a"]
}
runbook "restart" {
  match { alertname = "AgentDown" }
  concurrency {
    max  = 1
    wait = "30s"
  }
}
`)
	agents := newFleet()
	agents.restartFor = 2 * time.Second
	e := node(t, store, "n1", cfg, agents)
	var parked [2]atomic.Int32
	var unparked [2]atomic.Int32
	recs := make([]*RunRecord, 2)
	var wg sync.WaitGroup
	for i, a := range []string{"a1", "a2"} {
		if i == 1 {
			// a2 starts once a1 holds the slot.
			waitUntil(t, func() bool {
				agents.mu.Lock()
				defer agents.mu.Unlock()
				return agents.inRestart > 0
			})
		}
		wg.Go(func() {
			recs[i] = e.Run(context.Background(), Request{Alert: agentAlert(a), Park: func() func() {
				parked[i].Add(1)
				return func() { unparked[i].Add(1) }
			}})
		})
	}
	wg.Wait()
	for i, r := range recs {
		if r.Outcome != OutcomeRecovered {
			t.Fatalf("run %d: %s %q", i, r.Outcome, r.Reason)
		}
	}
	if parked[0].Load() != 0 || parked[1].Load() != 1 || unparked[1].Load() != 1 {
		t.Errorf("parks: first %d, second %d (unparked %d); want 0, 1, 1", parked[0].Load(), parked[1].Load(), unparked[1].Load())
	}
}
