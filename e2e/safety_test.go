package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/runbooks"
)

// TestSafety shows issue 10's "safe at 3 a.m." controls end to end, on real
// processes: one redis-server, two `medic bridge` and two `medic node`
// processes sharing it, one prometheus-alertmanager for silences, and test
// agents supervised by the nodes. Alerts are posted to either bridge the way
// Alertmanager posts its webhook (directly, to keep it fast).
//
// The subtests that do not disturb each other run in parallel, each with
// its own agents and runbook; the global pause and the node restart of the
// budget case run alone afterwards.
func TestSafety(t *testing.T) {
	began := time.Now()
	s := startSafety(t)
	t.Logf("safety stack up in %s", time.Since(began).Round(time.Millisecond))
	t.Run("parallel", func(t *testing.T) {
		t.Run("auth", func(t *testing.T) { t.Parallel(); safetyAuth(t, s) })
		t.Run("concurrency", func(t *testing.T) { t.Parallel(); safetyConcurrency(t, s) })
		t.Run("limited", func(t *testing.T) { t.Parallel(); safetyLimited(t, s) })
		t.Run("circuit", func(t *testing.T) { t.Parallel(); safetyCircuit(t, s) })
		t.Run("shadow", func(t *testing.T) { t.Parallel(); safetyShadow(t, s) })
		t.Run("approvals", func(t *testing.T) { t.Parallel(); safetyApprovals(t, s) })
		t.Run("silence", func(t *testing.T) { t.Parallel(); safetySilence(t, s) })
	})
	// The global pause stops every runbook, and the budget case restarts a
	// node (with its agents): both alone.
	t.Run("pause", func(t *testing.T) { safetyPause(t, s) })
	t.Run("budget", func(t *testing.T) { safetyBudget(t, s) })
	t.Logf("TestSafety wall time %s", time.Since(began).Round(time.Millisecond))
}

// The two nodes of the safety stack.
const (
	sfNodeA = "sf-a"
	sfNodeB = "sf-b"
)

// stormAgents is how many agents fail at once in the concurrency case.
const stormAgents = 20

// safety is the running estate of TestSafety.
type safety struct {
	base    string // scratch root
	dir     string // HCL configuration directory
	redis   *redistest.Server
	rdb     *redis.Client
	am      *harness.Alertmanager
	bridges []*harness.Bridge
	nodes   map[string]*harness.Node
	token   string

	mu     sync.Mutex
	ports  map[string]int
	agents map[string]string // agent → node
	last   time.Time         // the last startsAt handed out
}

func startSafety(t *testing.T) *safety {
	t.Helper()
	base := t.TempDir()
	s := &safety{base: base, dir: filepath.Join(base, "conf"), ports: map[string]int{}, agents: map[string]string{}, nodes: map[string]*harness.Node{}}
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.redis = redistest.Start(t, redistest.Options{})
	s.rdb = s.redis.Client()
	var tokenFile string
	s.token, tokenFile = harness.Token(t)
	// The Alertmanager only holds silences here: no alert reaches it, so
	// its webhook (which must be configured) is never called.
	s.am = harness.StartAlertmanagers(t, 1, harness.AlertmanagerOptions{
		WebhookURLs: []string{"http://127.0.0.1:9/unused"},
	})[0]

	cfg := filepath.Join(s.dir, "safety.hcl")
	hcl := s.estate(t)
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bins.Medic, "validate", s.dir).CombinedOutput(); err != nil {
		t.Fatalf("medic validate of the safety estate: %v\n%s\n%s", err, out, hcl)
	}
	for i := range 2 {
		s.bridges = append(s.bridges, harness.StartBridge(t, harness.BridgeOptions{
			Name: "sf-bridge-" + strconv.Itoa(i), Medic: bins.Medic, ConfigPath: s.dir,
			RedisURL: s.redis.URL(), TokenFile: tokenFile,
		}))
	}
	for _, n := range []string{sfNodeA, sfNodeB} {
		s.nodes[n] = harness.StartNode(t, harness.NodeOptions{
			Name: n, Medic: bins.Medic, ConfigPath: s.dir, RedisURL: s.redis.URL(),
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpAgentLogs(t)
		}
	})
	return s
}

// port reserves a loopback port for name once.
func (s *safety) port(t testing.TB, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.ports[name]; ok {
		return p
	}
	p := testport.Free(t)
	s.ports[name] = p
	return p
}

func (s *safety) agentURL(t testing.TB, name string) string {
	return fmt.Sprintf("http://127.0.0.1:%d", s.port(t, "agent:"+name))
}

func (s *safety) workdir(name string) string {
	d := filepath.Join(s.base, "work-"+name)
	_ = os.MkdirAll(d, 0o755)
	return d
}

// agent renders a supervised test agent on node, without a watchdog, so
// that only alerts start runs.
func (s *safety) agent(t testing.TB, name, node string, extra ...string) string {
	s.mu.Lock()
	s.agents[name] = node
	s.mu.Unlock()
	u := s.agentURL(t, name)
	argv := append([]string{bins.TestAgent, "--listen=" + strings.TrimPrefix(u, "http://"), "--name=" + name}, extra...)
	return fmt.Sprintf(`agent %q {
  node     = %q
  command  = %s
  workdir  = %q
  watchdog = false
  probe "http" {
    url      = %q
    timeout  = "400ms"
    interval = "2s"
  }
}
`, name, node, hclList(argv), s.workdir(name), u+"/healthz")
}

// script writes an executable shell script into the scratch root.
func (s *safety) script(t testing.TB, name, body string) string {
	p := filepath.Join(s.base, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// shadowMarker is the file the shadow runbook's repair script would write.
func (s *safety) shadowMarker() string { return filepath.Join(s.base, "shadow-repair-ran") }

const sfVerify = `  verify {
    attempts = 40
    interval = "250ms"
  }
`

// estate renders every agent, runbook and pool of TestSafety.
func (s *safety) estate(t testing.TB) string {
	var b strings.Builder
	b.WriteString("# generated by TestSafety\n\n")

	// 1. concurrency: 20 agents over both nodes, one runbook, at most 3
	// acting at once. The repair makes each run act for a while.
	for i := 1; i <= stormAgents; i++ {
		node := sfNodeA
		if i%2 == 0 {
			node = sfNodeB
		}
		b.WriteString(s.agent(t, stormAgent(i), node))
	}
	slow := s.script(t, "slow-repair.sh", "sleep 0.5\necho \"slow repair of $MEDIC_AGENT\"\n")
	fmt.Fprintf(&b, `runbook "sf-storm" {
  match {
    alertname = "SafetyStorm"
  }
  cause "always" {
    when    = true
    repair  = [%q]
    timeout = "20s"
  }
  concurrency {
    max  = 3
    wait = "3m"
  }
%s  budget {
    restarts = 10
    window   = "1h"
  }
}

`, slow, sfVerify)

	// 1b. limited: one slot, a short wait, a long repair.
	for i := 1; i <= 3; i++ {
		node := sfNodeA
		if i == 2 {
			node = sfNodeB
		}
		b.WriteString(s.agent(t, fmt.Sprintf("sf-lim-%d", i), node))
	}
	fmt.Fprintf(&b, `runbook "sf-limited" {
  match {
    alertname = "SafetyLimited"
  }
  cause "always" {
    when    = true
    repair  = [%q]
    timeout = "20s"
  }
  concurrency {
    max  = 1
    wait = "1s"
  }
%s}

`, s.script(t, "long-repair.sh", "sleep 4\n"), sfVerify)

	// 3. circuit.
	b.WriteString(s.agent(t, "sf-circuit", sfNodeA))
	fmt.Fprintf(&b, `runbook "sf-circuit" {
  match {
    alertname = "SafetyCircuit"
  }
  circuit {
    max_runs = 2
    window   = "1h"
  }
%s  budget {
    restarts = 10
    window   = "1h"
  }
}

`, sfVerify)

	// 4. shadow: the repair would leave a file behind.
	b.WriteString(s.agent(t, "sf-shadow", sfNodeB))
	marker := s.script(t, "shadow-repair.sh", "echo ran > \"$1\"\n")
	fmt.Fprintf(&b, `runbook "sf-shadow" {
  match {
    alertname = "SafetyShadow"
  }
  mode = "shadow"
  cause "always" {
    when   = true
    repair = [%q, %q]
  }
%s}

`, marker, s.shadowMarker(), sfVerify)

	// 5. approvals.
	b.WriteString(s.agent(t, "sf-appr-yes", sfNodeA))
	b.WriteString(s.agent(t, "sf-appr-no", sfNodeB))
	b.WriteString(s.agent(t, "sf-appr-exp", sfNodeA))
	fmt.Fprintf(&b, `runbook "sf-approve" {
  match {
    alertname = "SafetyApprove"
  }
  mode         = "approve"
  approval_ttl = "3m"
%s}

runbook "sf-approve-expiry" {
  match {
    alertname = "SafetyApproveExpiry"
  }
  mode         = "approve"
  approval_ttl = "3s"
%s}

`, sfVerify, sfVerify)

	// 6. pause.
	b.WriteString(s.agent(t, "sf-pause", sfNodeA))
	fmt.Fprintf(&b, `runbook "sf-pause" {
  match {
    alertname = "SafetyPause"
  }
%s}

`, sfVerify)

	// 7. silence: a slow repair to watch the silence while the run acts,
	// and an agent that cannot start, so that its run escalates.
	b.WriteString(s.agent(t, "sf-sil", sfNodeB))
	b.WriteString(s.agent(t, "sf-sil-esc", sfNodeA, "--fail-start"))
	slower := s.script(t, "slower-repair.sh", "sleep 3\necho \"slow repair of $MEDIC_AGENT, login password=hunter2 ok\"\n")
	fmt.Fprintf(&b, `runbook "sf-silence" {
  match {
    alertname = "SafetySilence"
  }
  cause "always" {
    when    = true
    repair  = [%q]
    timeout = "20s"
  }
  silence {
    alertmanager = %q
    duration     = "10m"
  }
  redact = ["password=\\S+"]
%s}

runbook "sf-silence-escalate" {
  match {
    alertname = "SafetySilenceEscalate"
  }
  silence {
    alertmanager = %q
    duration     = "10m"
  }
  verify {
    attempts = 2
    interval = "250ms"
  }
}

`, slower, s.am.URL, sfVerify, s.am.URL)

	// 2. budget: two restarts per hour, shared in Redis.
	b.WriteString(s.agent(t, "sf-budget", sfNodeB))
	fmt.Fprintf(&b, `runbook "sf-budget" {
  match {
    alertname = "SafetyBudget"
  }
%s  budget {
    restarts = 2
    window   = "1h"
  }
}

`, sfVerify)

	// 8. a pool, for GET /api/v1/pools/{pool}; its agents run nowhere.
	for _, id := range []string{"sf-pool-1", "sf-pool-2"} {
		fmt.Fprintf(&b, `agent %q {
  node    = "sf-nowhere"
  pidfile = %q
  start   = ["/bin/true"]
}
`, id, filepath.Join(s.base, id+".pid"))
	}
	b.WriteString(`pool "sf-pool" {
  agents         = ["sf-pool-1", "sf-pool-2"]
  check_interval = "5s"
  device_url     = "http://127.0.0.1:9/${device}"
}
`)
	return b.String()
}

func stormAgent(i int) string { return fmt.Sprintf("sf-storm-%02d", i) }

// ---- helpers

// alert is one alert as Alertmanager would send it for agent.
type sfAlert struct {
	Labels   map[string]string
	StartsAt time.Time
}

// newAlert labels an alert for agent the way the deploy rules do, with a
// startsAt no other alert of the test has (a new episode for the bridges'
// dedup).
func (s *safety) newAlert(alertname, agent string) sfAlert {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := time.Now().UTC().Truncate(time.Millisecond)
	if !at.After(s.last) {
		at = s.last.Add(time.Millisecond)
	}
	s.last = at
	return sfAlert{
		Labels:   map[string]string{"alertname": alertname, "agent": agent, "node": s.agents[agent], "severity": "critical"},
		StartsAt: at,
	}
}

// fire posts alerts to bridge b as one Alertmanager webhook notification
// and wants every one accepted.
func (s *safety) fire(t testing.TB, b *harness.Bridge, alerts ...sfAlert) {
	t.Helper()
	type wire struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
		Fingerprint  string            `json:"fingerprint"`
	}
	var ws []wire
	for _, a := range alerts {
		ls := model.LabelSet{}
		for k, v := range a.Labels {
			ls[model.LabelName(k)] = model.LabelValue(v)
		}
		ws = append(ws, wire{
			Status: "firing", Labels: a.Labels,
			Annotations: map[string]string{"summary": a.Labels["agent"] + " is unhealthy"},
			StartsAt:    a.StartsAt, GeneratorURL: "http://prometheus.invalid/graph",
			Fingerprint: ls.Fingerprint().String(),
		})
	}
	body, _ := json.Marshal(map[string]any{
		"version": "4", "groupKey": "{}:{alertname=\"" + alerts[0].Labels["alertname"] + "\"}",
		"status": "firing", "receiver": "medic", "truncatedAlerts": 0,
		"groupLabels":  map[string]string{"alertname": alerts[0].Labels["alertname"]},
		"commonLabels": map[string]string{}, "commonAnnotations": map[string]string{},
		"externalURL": "http://alertmanager.invalid", "alerts": ws,
	})
	code, resp := s.call(t, b, http.MethodPost, "/api/v1/webhook", body)
	var got struct{ Accepted int }
	_ = json.Unmarshal(resp, &got)
	if code != http.StatusAccepted || got.Accepted != len(alerts) {
		t.Fatalf("webhook to %s: %d %s, want 202 with %d accepted", b.Name, code, resp, len(alerts))
	}
}

// call sends an authenticated JSON request to a bridge.
func (s *safety) call(t testing.TB, b *harness.Bridge, method, path string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := b.Auth().Clone()
	if h == nil {
		h = http.Header{}
	}
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	code, resp, err := harness.Do(ctx, method, b.URL+path, h, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, b.Name, err)
	}
	return code, resp
}

// runOf waits until the run of alert a has a record for which ok holds,
// asking bridge b.
func (s *safety) runOf(t testing.TB, b *harness.Bridge, a sfAlert, timeout time.Duration, ok func(runbooks.RunRecord) bool) runbooks.RunRecord {
	t.Helper()
	var found runbooks.RunRecord
	agent := a.Labels["agent"]
	harness.Eventually(t, timeout, 100*time.Millisecond, fmt.Sprintf("run of %s@%s", agent, a.StartsAt.Format(time.RFC3339Nano)), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		runs, err := b.Runs(ctx, url.Values{"agent": {agent}, "limit": {"100"}})
		if err != nil {
			return false, err.Error()
		}
		var mine []runbooks.RunRecord
		for _, r := range runs {
			if r.StartsAt.Equal(a.StartsAt) {
				mine = append(mine, r)
				if ok(r) {
					found = r
					return true, ""
				}
			}
		}
		return false, summarizeRuns(mine)
	})
	return found
}

// final is a run that has ended.
func final(r runbooks.RunRecord) bool {
	return r.Outcome != "" && r.Outcome != runbooks.OutcomePendingApproval
}

// finalRun waits for the run of a to end and returns it.
func (s *safety) finalRun(t testing.TB, b *harness.Bridge, a sfAlert, timeout time.Duration) runbooks.RunRecord {
	t.Helper()
	return s.runOf(t, b, a, timeout, final)
}

func (s *safety) pid(t testing.TB, name string) (int, error) {
	return harness.AgentPID(s.agentURL(t, name))
}

// waitUp waits until agent answers /healthz and returns its pid.
func (s *safety) waitUp(t testing.TB, name string, timeout time.Duration) int {
	t.Helper()
	var pid int
	harness.Eventually(t, timeout, 50*time.Millisecond, name+" healthy", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		code, _, err := harness.Do(ctx, http.MethodGet, s.agentURL(t, name)+"/healthz", nil, nil)
		if err != nil || code != 200 {
			return false, fmt.Sprintf("%d %v", code, err)
		}
		p, err := s.pid(t, name)
		pid = p
		return err == nil, fmt.Sprint(err)
	})
	return pid
}

// kill SIGKILLs a test agent (never pid ≤ 1) and waits until it is gone.
func (s *safety) kill(t testing.TB, name string) int {
	t.Helper()
	pid, err := s.pid(t, name)
	if err != nil {
		t.Fatalf("pid of %s: %d %v", name, pid, err)
	}
	if err := procsig.Process(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", name, pid, err)
	}
	harness.Eventually(t, 10*time.Second, 20*time.Millisecond, name+" gone", func() (bool, string) {
		_, err := s.pid(t, name)
		return err != nil, "still answers"
	})
	return pid
}

// hang makes a test agent stop answering its probe (it stays alive).
func (s *safety) hang(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, b, err := harness.Do(ctx, http.MethodPost, s.agentURL(t, name)+"/hang", nil, nil)
	if err != nil || code/100 != 2 {
		t.Fatalf("hang %s: %d %s %v", name, code, b, err)
	}
}

// down reports that agent does not answer at all.
func (s *safety) down(t testing.TB, name string) bool {
	_, err := s.pid(t, name)
	return err != nil
}

// stepNamed returns the first step called name (or "name N/M").
func stepNamed(r runbooks.RunRecord, name string) *runbooks.Step {
	for i := range r.Steps {
		if stepIs(r.Steps[i], name) {
			return &r.Steps[i]
		}
	}
	return nil
}

// slotWait reads the wait from a concurrency step's detail (`slot taken
// for "*" (at most 3 at once; waited 1.204s)`).
func slotWait(detail string) (time.Duration, bool) {
	_, rest, ok := strings.Cut(detail, "; waited ")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSuffix(rest, ")"))
	return d, err == nil
}

// remediations sums medic_remediations_total{runbook, outcome} over both
// nodes' /metrics (the engines run in the nodes).
func (s *safety) remediations(t testing.TB, runbook, outcome string) float64 {
	t.Helper()
	var sum float64
	for _, n := range []string{sfNodeA, sfNodeB} {
		v, err := scrapeSum(s.nodes[n].URL+"/metrics", "medic_remediations_total", `runbook="`+runbook+`"`, `outcome="`+outcome+`"`)
		if err != nil {
			t.Fatalf("node %s metrics: %v", n, err)
		}
		sum += v
	}
	return sum
}

// wantRemediations waits until medic_remediations_total{runbook, outcome}
// summed over the nodes is want.
func (s *safety) wantRemediations(t testing.TB, runbook, outcome string, want float64) {
	t.Helper()
	harness.Eventually(t, 10*time.Second, 200*time.Millisecond,
		fmt.Sprintf("medic_remediations_total{runbook=%q,outcome=%q} = %v", runbook, outcome, want), func() (bool, string) {
			v := s.remediations(t, runbook, outcome)
			return v == want, fmt.Sprint(v)
		})
}

// stepEnd is when a step ended.
func stepEnd(st runbooks.Step) time.Time {
	return st.Started.Add(time.Duration(st.Duration * float64(time.Second)))
}

// acted reports whether the run did anything to the agent.
func acted(r runbooks.RunRecord) bool {
	for _, st := range r.Steps {
		if st.Name == "restart" || strings.HasPrefix(st.Name, "repair:") || st.Name == "backoff" {
			return true
		}
	}
	return false
}

func (s *safety) dumpAgentLogs(t testing.TB) {
	files, _ := filepath.Glob(filepath.Join(s.base, "work-*", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 2<<10 {
			b = b[len(b)-2<<10:]
		}
		t.Logf("---- %s ----\n%s", f, b)
	}
	for name, n := range s.nodes {
		t.Logf("---- node %s ----\n%s", name, n.Tail(40))
	}
}

// ---- 8. authentication of reads

func safetyAuth(t *testing.T, s *safety) {
	ctx := context.Background()
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	for _, b := range s.bridges {
		for _, path := range []string{"/api/v1/runs", "/api/v1/pools/sf-pool", "/api/v1/pause", "/"} {
			for _, c := range []struct {
				what string
				h    http.Header
				want int
			}{
				{"no token", nil, http.StatusUnauthorized},
				{"a wrong token", bearer("not-" + s.token), http.StatusUnauthorized},
				{"the token", b.Auth(), http.StatusOK},
			} {
				code, body, err := harness.Do(ctx, http.MethodGet, b.URL+path, c.h, nil)
				if err != nil || code != c.want {
					t.Errorf("%s: GET %s with %s: %d %v, want %d: %.200s", b.Name, path, c.what, code, err, c.want, body)
				}
			}
		}
		// The operator's writes need it too.
		code, _, err := harness.Do(ctx, http.MethodPost, b.URL+"/api/v1/pause", http.Header{"Content-Type": {"application/json"}}, []byte(`{}`))
		if err != nil || code != http.StatusUnauthorized {
			t.Errorf("%s: POST /api/v1/pause without token: %d %v, want 401", b.Name, code, err)
		}
		// What Prometheus and load balancers call stays open.
		for _, path := range []string{"/-/healthy", "/-/ready", "/metrics"} {
			code, body, err := harness.Do(ctx, http.MethodGet, b.URL+path, nil, nil)
			if err != nil || code != http.StatusOK {
				t.Errorf("%s: GET %s without token: %d %v, want 200: %.200s", b.Name, path, code, err, body)
			}
		}
	}
	// A browser signs in with the token and reads the page with the
	// session cookie.
	b := s.bridges[0]
	jar := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := jar.PostForm(b.URL+"/login", url.Values{"token": {s.token}, "name": {"erin"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "medic_session" {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == nil || !cookie.HttpOnly || strings.Contains(cookie.Value, s.token) {
		t.Errorf("login: %s, cookie %+v", resp.Status, cookie)
	} else {
		// Any replica with the token accepts the session.
		code, body, err := harness.Do(ctx, http.MethodGet, s.bridges[1].URL+"/", http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}}, nil)
		if err != nil || code != http.StatusOK {
			t.Errorf("status page with the session cookie: %d %v %.200s", code, err, body)
		}
	}
	for _, path := range []string{"/api/v1/runs/x/approve", "/api/v1/runs/x/reject", "/api/v1/agents/" + sfNodeA + "/sf-circuit/reset"} {
		if code, _, err := harness.Do(ctx, http.MethodPost, b.URL+path, nil, nil); err != nil || code != http.StatusUnauthorized {
			t.Errorf("POST %s without token: %d %v, want 401", path, code, err)
		}
	}
	if t.Failed() {
		return
	}
	var st struct {
		Pool string `json:"pool"`
	}
	if err := s.bridges[1].GetJSON(ctx, "/api/v1/pools/sf-pool", &st); err != nil || st.Pool != "sf-pool" {
		t.Errorf("pool status with the token: %+v %v", st, err)
	}
}

// ---- 1. twenty agents fail at once; at most three runs act at once.

func safetyConcurrency(t *testing.T, s *safety) {
	pids := map[string]int{}
	for i := 1; i <= stormAgents; i++ {
		pids[stormAgent(i)] = s.waitUp(t, stormAgent(i), 60*time.Second)
	}
	var alerts [2][]sfAlert
	for i := 1; i <= stormAgents; i++ {
		s.hang(t, stormAgent(i))
		alerts[i%2] = append(alerts[i%2], s.newAlert("SafetyStorm", stormAgent(i)))
	}
	// Two notifications, one to each bridge, at the same moment.
	var wg sync.WaitGroup
	for i, b := range s.bridges {
		wg.Go(func() { s.fire(t, b, alerts[i]...) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var runs []runbooks.RunRecord
	for i := range alerts {
		for _, a := range alerts[i] {
			runs = append(runs, s.finalRun(t, s.bridges[(i+1)%2], a, 150*time.Second))
		}
	}
	type iv struct {
		from, to time.Time
		id       string
	}
	var ivs []iv
	nodes := map[string]int{}
	outcomes := map[string]int{}
	waited := 0
	for _, r := range runs {
		outcomes[r.Outcome]++
		nodes[r.Node]++
		if r.Outcome != runbooks.OutcomeRecovered && r.Outcome != runbooks.OutcomeLimited {
			t.Errorf("run %s of %s: outcome %q (%s), want recovered or limited: %s", r.ID, r.Agent, r.Outcome, r.Reason, stepNames(r))
			continue
		}
		if r.Outcome == runbooks.OutcomeLimited {
			continue
		}
		// A run is in progress from the moment it holds its slot (the end
		// of its concurrency step) until its last step ended: both inside
		// the time the slot is really held, so an overlap of these
		// intervals is a real one.
		cs := stepNamed(r, "concurrency")
		if cs == nil || !cs.OK {
			t.Errorf("run %s of %s acted without a concurrency slot: %s", r.ID, r.Agent, stepNames(r))
			continue
		}
		if w, ok := slotWait(cs.Detail); !ok {
			t.Errorf("run %s: concurrency step %q does not say how long it waited", r.ID, cs.Detail)
		} else if w >= 200*time.Millisecond {
			waited++
		}
		from := stepEnd(*cs)
		to := from
		for _, st := range r.Steps[slices.IndexFunc(r.Steps, func(st runbooks.Step) bool { return st.Name == "concurrency" })+1:] {
			if end := stepEnd(st); end.After(to) {
				to = end
			}
		}
		if !hasStep(r, "repair:always", true) || !hasStep(r, "restart", true) || !hasStep(r, "verify", true) {
			t.Errorf("run %s of %s lacks repair, restart and verify after its slot: %s", r.ID, r.Agent, stepNames(r))
		}
		ivs = append(ivs, iv{from, to, r.ID})
		if pid := s.waitUp(t, r.Agent, 10*time.Second); pid == pids[r.Agent] {
			t.Errorf("%s recovered but kept pid %d", r.Agent, pid)
		}
	}
	// Sweep: ends before starts at the same instant.
	type ev struct {
		at    time.Time
		delta int
	}
	var evs []ev
	for _, x := range ivs {
		evs = append(evs, ev{x.from, +1}, ev{x.to, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if !evs[i].at.Equal(evs[j].at) {
			return evs[i].at.Before(evs[j].at)
		}
		return evs[i].delta < evs[j].delta
	})
	cur, peak := 0, 0
	var peakAt time.Time
	for _, e := range evs {
		cur += e.delta
		if cur > peak {
			peak, peakAt = cur, e.at
		}
	}
	var first, last time.Time
	for i, x := range ivs {
		if i == 0 || x.from.Before(first) {
			first = x.from
		}
		if x.to.After(last) {
			last = x.to
		}
	}
	t.Logf("%d runs: outcomes %v, nodes %v; at most %d in progress at once (at %s); %d waited 200ms or more for a slot; acting span %s",
		len(runs), outcomes, nodes, peak, peakAt.Format("15:04:05.000"), waited, last.Sub(first).Round(time.Millisecond))
	if peak > 3 {
		t.Errorf("%d runs were in progress at once, the limit is 3", peak)
	}
	if peak < 2 {
		t.Errorf("at most %d run in progress at once: the storm never ran in parallel, the limit was not exercised", peak)
	}
	s.wantRemediations(t, "sf-storm", runbooks.OutcomeRecovered, float64(outcomes[runbooks.OutcomeRecovered]))
	s.wantRemediations(t, "sf-storm", runbooks.OutcomeLimited, float64(outcomes[runbooks.OutcomeLimited]))
	if nodes[sfNodeA] == 0 || nodes[sfNodeB] == 0 {
		t.Errorf("runs by node %v: want both nodes", nodes)
	}
	if waited == 0 {
		t.Errorf("no run waited for a slot: the limit was not exercised")
	}
	// Every slot and every place in the queue is released in Redis.
	ctx := context.Background()
	keys, err := s.rdb.Keys(ctx, "medic:{rb:sf-storm}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if n, err := s.rdb.ZCard(ctx, k).Result(); err != nil || n != 0 {
			t.Errorf("%s: %d entries (%v) after every run ended", k, n, err)
		}
	}
}

// ---- 1b. runs that find no slot within the wait end limited, untouched.

func safetyLimited(t *testing.T, s *safety) {
	names := []string{"sf-lim-1", "sf-lim-2", "sf-lim-3"}
	pids := map[string]int{}
	var alerts []sfAlert
	for _, n := range names {
		pids[n] = s.waitUp(t, n, 60*time.Second)
		s.hang(t, n)
		alerts = append(alerts, s.newAlert("SafetyLimited", n))
	}
	s.fire(t, s.bridges[0], alerts[0], alerts[1])
	s.fire(t, s.bridges[1], alerts[2])
	outcomes := map[string]int{}
	for _, a := range alerts {
		r := s.finalRun(t, s.bridges[1], a, 90*time.Second)
		outcomes[r.Outcome]++
		switch r.Outcome {
		case runbooks.OutcomeRecovered:
			if pid := s.waitUp(t, r.Agent, 10*time.Second); pid == pids[r.Agent] {
				t.Errorf("%s recovered but kept pid %d", r.Agent, pid)
			}
		case runbooks.OutcomeLimited:
			if !strings.HasPrefix(r.Reason, "concurrency limit of runbook sf-limited: 1 at once") ||
				acted(r) || !hasStep(r, "concurrency", false) || !hasStep(r, "escalate", true) {
				t.Errorf("limited run %s: %q %s", r.ID, r.Reason, stepNames(r))
			}
			if pid, err := s.pid(t, r.Agent); err != nil || pid != pids[r.Agent] {
				t.Errorf("limited run touched %s: pid %d → %d (%v)", r.Agent, pids[r.Agent], pid, err)
			}
		default:
			t.Errorf("run %s of %s: %q %q", r.ID, r.Agent, r.Outcome, r.Reason)
		}
	}
	if outcomes[runbooks.OutcomeRecovered] != 1 || outcomes[runbooks.OutcomeLimited] != 2 {
		t.Errorf("outcomes %v, want 1 recovered and 2 limited", outcomes)
	}
	s.wantRemediations(t, "sf-limited", runbooks.OutcomeLimited, 2)
}

// ---- 3. the circuit opens on the third run and an operator resets it.

func safetyCircuit(t *testing.T, s *safety) {
	const agent = "sf-circuit"
	ctx := context.Background()
	key := "medic:{agent:" + sfNodeA + "/" + agent + "}:circuit"
	pid := s.waitUp(t, agent, 60*time.Second)
	for i := range 2 {
		s.kill(t, agent)
		a := s.newAlert("SafetyCircuit", agent)
		s.fire(t, s.bridges[i%2], a)
		r := s.finalRun(t, s.bridges[(i+1)%2], a, 90*time.Second)
		if r.Outcome != runbooks.OutcomeRecovered {
			t.Fatalf("run %d: %s", i+1, summarizeRuns([]runbooks.RunRecord{r}))
		}
		next := s.waitUp(t, agent, 10*time.Second)
		if next == pid {
			t.Errorf("run %d recovered %s but its pid %d did not change", i+1, agent, pid)
		}
		pid = next
	}
	if n, err := s.rdb.ZCard(ctx, key).Result(); err != nil || n != 2 {
		t.Errorf("%s holds %d runs (%v), want 2", key, n, err)
	}
	s.kill(t, agent)
	a := s.newAlert("SafetyCircuit", agent)
	s.fire(t, s.bridges[0], a)
	r := s.finalRun(t, s.bridges[1], a, 90*time.Second)
	if r.Outcome != runbooks.OutcomeCircuitOpen || !strings.HasPrefix(r.Reason, "circuit open: 2 runs for agent sf-circuit within 1h") {
		t.Fatalf("third run: %q %q, want circuit_open: %s", r.Outcome, r.Reason, stepNames(r))
	}
	if st := stepNamed(r, "circuit"); st == nil || st.OK || acted(r) {
		t.Errorf("third run: want a failed circuit step and no action: %s", stepNames(r))
	}
	time.Sleep(500 * time.Millisecond)
	if !s.down(t, agent) {
		t.Errorf("%s is running although its circuit was open", agent)
	}

	if code, body := s.call(t, s.bridges[0], http.MethodPost, "/api/v1/agents/"+sfNodeB+"/"+agent+"/reset", []byte(`{}`)); code != http.StatusNotFound {
		t.Errorf("reset on the wrong node: %d %s, want 404", code, body)
	}
	code, body := s.call(t, s.bridges[1], http.MethodPost, "/api/v1/agents/"+sfNodeA+"/"+agent+"/reset", []byte(`{"by":"dave","reason":"fixed the disk"}`))
	var res struct {
		Reset bool   `json:"reset"`
		By    string `json:"by"`
	}
	if err := json.Unmarshal(body, &res); code != http.StatusOK || err != nil || !res.Reset || res.By != "dave" {
		t.Fatalf("reset: %d %s", code, body)
	}
	if n, err := s.rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Errorf("%s still exists after the reset (%d %v)", key, n, err)
	}
	a = s.newAlert("SafetyCircuit", agent)
	s.fire(t, s.bridges[1], a)
	r = s.finalRun(t, s.bridges[0], a, 90*time.Second)
	if r.Outcome != runbooks.OutcomeRecovered || !hasStep(r, "restart", true) {
		t.Fatalf("run after the reset: %s", summarizeRuns([]runbooks.RunRecord{r}))
	}
	if next := s.waitUp(t, agent, 10*time.Second); next == pid {
		t.Errorf("pid %d unchanged after the run that followed the reset", pid)
	}
	if n, err := s.rdb.ZCard(ctx, key).Result(); err != nil || n != 1 {
		t.Errorf("%s holds %d runs (%v) after the reset and one run, want 1", key, n, err)
	}
	s.wantRemediations(t, "sf-circuit", runbooks.OutcomeRecovered, 3)
	s.wantRemediations(t, "sf-circuit", runbooks.OutcomeCircuitOpen, 1)
}

// ---- 4. shadow mode executes nothing.

func safetyShadow(t *testing.T, s *safety) {
	const agent = "sf-shadow"
	pid := s.waitUp(t, agent, 60*time.Second)
	s.hang(t, agent)
	a := s.newAlert("SafetyShadow", agent)
	s.fire(t, s.bridges[1], a)
	r := s.finalRun(t, s.bridges[0], a, 90*time.Second)
	if r.Outcome != runbooks.OutcomeShadowed {
		t.Fatalf("outcome %q, want shadowed: %s", r.Outcome, summarizeRuns([]runbooks.RunRecord{r}))
	}
	if r.Reason != "shadow mode: would repair always and restart; nothing was executed" {
		t.Errorf("reason %q", r.Reason)
	}
	if !slices.Equal(r.Causes, []string{"always"}) || r.Usage == nil {
		t.Errorf("causes %v usage %+v: want the diagnosis recorded", r.Causes, r.Usage)
	}
	if p := stepNamed(r, "probe"); p == nil || p.OK {
		t.Errorf("want a failed probe before the diagnosis: %s", stepNames(r))
	}
	want := map[string]string{
		"repair:always": "would run [\"" + filepath.Join(s.base, "shadow-repair.sh") + "\", \"" + s.shadowMarker() + "\"] (shadow mode)",
		"restart":       "would restart the agent",
		"verify":        "would verify with the probe up to 40 times (shadow mode)",
	}
	for name, detail := range want {
		st := stepNamed(r, name)
		switch {
		case st == nil:
			t.Errorf("no %s step: %s", name, stepNames(r))
		case !strings.HasPrefix(st.Detail, detail) || st.ExitCode != nil || st.Output != "":
			t.Errorf("step %s: detail %q exit %v output %q, want %q and nothing run", name, st.Detail, st.ExitCode, st.Output, detail)
		}
	}
	if _, err := os.Stat(s.shadowMarker()); !os.IsNotExist(err) {
		t.Errorf("the repair script ran in shadow mode: %s exists (%v)", s.shadowMarker(), err)
	}
	// The same process, still hung: nothing restarted it.
	if got, err := s.pid(t, agent); err != nil || got != pid {
		t.Errorf("pid now %d (%v), was %d", got, err, pid)
	}
	if err := procsig.Process(pid, 0); err != nil {
		t.Errorf("process %d: %v", pid, err)
	}
	// No restart was counted against the budget.
	if n, err := s.rdb.Exists(context.Background(), "medic:{agent:"+sfNodeB+"/"+agent+"}:budget").Result(); err != nil || n != 0 {
		t.Errorf("shadow run left a restart budget entry (%d %v)", n, err)
	}
	s.wantRemediations(t, "sf-shadow", runbooks.OutcomeShadowed, 1)
}

// ---- 5. approved, rejected, expired.

func safetyApprovals(t *testing.T, s *safety) {
	ctx := context.Background()
	yesPID := s.waitUp(t, "sf-appr-yes", 60*time.Second)
	s.waitUp(t, "sf-appr-no", 60*time.Second)
	s.waitUp(t, "sf-appr-exp", 60*time.Second)
	for _, n := range []string{"sf-appr-yes", "sf-appr-no", "sf-appr-exp"} {
		s.kill(t, n)
	}
	yes, no := s.newAlert("SafetyApprove", "sf-appr-yes"), s.newAlert("SafetyApprove", "sf-appr-no")
	exp := s.newAlert("SafetyApproveExpiry", "sf-appr-exp")
	s.fire(t, s.bridges[0], yes, no)
	s.fire(t, s.bridges[1], exp)

	pending := func(r runbooks.RunRecord) bool { return r.Outcome == runbooks.OutcomePendingApproval }
	py := s.runOf(t, s.bridges[1], yes, 90*time.Second, pending)
	pn := s.runOf(t, s.bridges[0], no, 90*time.Second, pending)
	for _, p := range []runbooks.RunRecord{py, pn} {
		if st := stepNamed(p, "liveness"); st == nil || st.OK || acted(p) {
			t.Errorf("pending run %s: want a dead agent and nothing done yet: %s", p.ID, stepNames(p))
		}
		if _, err := s.rdb.ZScore(ctx, "medic:{ctl}:approvals", p.ID).Result(); err != nil {
			t.Errorf("pending run %s is not in medic:{ctl}:approvals: %v", p.ID, err)
		}
	}
	// Nothing acts while waiting.
	time.Sleep(time.Second)
	if !s.down(t, "sf-appr-yes") || !s.down(t, "sf-appr-no") {
		t.Errorf("an agent was restarted before anyone approved")
	}

	code, body := s.call(t, s.bridges[1], http.MethodPost, "/api/v1/runs/"+py.ID+"/approve", []byte(`{"by":"alice"}`))
	if code != http.StatusOK {
		t.Fatalf("approve %s: %d %s", py.ID, code, body)
	}
	code, body = s.call(t, s.bridges[0], http.MethodPost, "/api/v1/runs/"+pn.ID+"/reject", []byte(`{"by":"bob","reason":"change freeze"}`))
	if code != http.StatusOK {
		t.Fatalf("reject %s: %d %s", pn.ID, code, body)
	}
	// The first decision stands, whichever bridge hears the second.
	if code, body = s.call(t, s.bridges[0], http.MethodPost, "/api/v1/runs/"+py.ID+"/reject", []byte(`{"by":"mallory"}`)); code != http.StatusConflict {
		t.Errorf("second decision on %s: %d %s, want 409", py.ID, code, body)
	}

	ry := s.finalRun(t, s.bridges[0], yes, 60*time.Second)
	if ry.ID != py.ID || ry.Outcome != runbooks.OutcomeRecovered || !hasStep(ry, "restart", true) {
		t.Errorf("approved run: %s", summarizeRuns([]runbooks.RunRecord{ry}))
	}
	if st := stepNamed(ry, "approval"); st == nil || !st.OK || st.Detail != "approved by alice" {
		t.Errorf("approved run's approval step %+v, want \"approved by alice\"", st)
	}
	if pid := s.waitUp(t, "sf-appr-yes", 10*time.Second); pid == yesPID {
		t.Errorf("approved: pid %d unchanged", pid)
	}

	rn := s.finalRun(t, s.bridges[1], no, 60*time.Second)
	if rn.ID != pn.ID || rn.Outcome != runbooks.OutcomeRejected || acted(rn) ||
		rn.Reason != "rejected by bob: change freeze; nothing acted" {
		t.Errorf("rejected run: %q %q %s", rn.Outcome, rn.Reason, stepNames(rn))
	}

	re := s.finalRun(t, s.bridges[0], exp, 90*time.Second)
	if re.Outcome != runbooks.OutcomeExpired || acted(re) ||
		re.Reason != "no operator approved or rejected the run within approval_ttl 3s; nothing acted" {
		t.Errorf("expired run: %q %q %s", re.Outcome, re.Reason, stepNames(re))
	}
	// It has ended: 409 naming its outcome (issue 14).
	if code, body = s.call(t, s.bridges[1], http.MethodPost, "/api/v1/runs/"+re.ID+"/approve", []byte(`{"by":"alice"}`)); code != http.StatusConflict || !strings.Contains(string(body), "expired") {
		t.Errorf("late approval of %s: %d %s, want 409 naming expired", re.ID, code, body)
	}
	time.Sleep(500 * time.Millisecond)
	if !s.down(t, "sf-appr-no") || !s.down(t, "sf-appr-exp") {
		t.Errorf("a rejected or expired run's agent was restarted")
	}
	if n, err := s.rdb.ZCard(ctx, "medic:{ctl}:approvals").Result(); err != nil || n != 0 {
		t.Errorf("medic:{ctl}:approvals holds %d runs (%v) after every decision", n, err)
	}
	s.wantRemediations(t, "sf-approve", runbooks.OutcomeRecovered, 1)
	s.wantRemediations(t, "sf-approve", runbooks.OutcomeRejected, 1)
	s.wantRemediations(t, "sf-approve-expiry", runbooks.OutcomeExpired, 1)
	// Waiting is a state, never an outcome label.
	for _, rb := range []string{"sf-approve", "sf-approve-expiry"} {
		if v := s.remediations(t, rb, runbooks.OutcomePendingApproval); v != 0 {
			t.Errorf("medic_remediations_total{runbook=%q,outcome=\"pending_approval\"} = %v", rb, v)
		}
	}
}

// ---- 7. the run's silence in a real Alertmanager.

// amSilence is one entry of Alertmanager's GET /api/v2/silences.
type amSilence struct {
	ID       string                    `json:"id"`
	Matchers []runbooks.SilenceMatcher `json:"matchers"`
	StartsAt time.Time                 `json:"startsAt"`
	EndsAt   time.Time                 `json:"endsAt"`
	Comment  string                    `json:"comment"`
	By       string                    `json:"createdBy"`
	Status   struct {
		State string `json:"state"`
	} `json:"status"`
}

func (s *safety) silences(t testing.TB) []amSilence {
	t.Helper()
	var out []amSilence
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := harness.GetJSON(ctx, s.am.URL+"/api/v2/silences", &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// silencesOf are the silences whose matchers are exactly labels, as
// equality matchers.
func (s *safety) silencesOf(t testing.TB, labels map[string]string) []amSilence {
	var out []amSilence
	for _, sil := range s.silences(t) {
		if len(sil.Matchers) != len(labels) {
			continue
		}
		ok := true
		for _, m := range sil.Matchers {
			if m.IsRegex || !m.IsEqual || labels[m.Name] != m.Value {
				ok = false
			}
		}
		if ok {
			out = append(out, sil)
		}
	}
	return out
}

func safetySilence(t *testing.T, s *safety) {
	const agent = "sf-sil"
	s.waitUp(t, agent, 60*time.Second)
	s.hang(t, agent)
	a := s.newAlert("SafetySilence", agent)
	s.fire(t, s.bridges[0], a)

	// While the run acts (its repair takes 3s), Alertmanager holds an
	// active silence of exactly the alert's labels.
	var sil amSilence
	harness.Eventually(t, 90*time.Second, 100*time.Millisecond, "an active silence while the run acts", func() (bool, string) {
		for _, x := range s.silencesOf(t, a.Labels) {
			if x.Status.State == "active" {
				sil = x
			}
		}
		if sil.ID == "" {
			return false, fmt.Sprintf("%d silences", len(s.silences(t)))
		}
		return true, ""
	})
	ctx := context.Background()
	runs, err := s.bridges[1].Runs(ctx, url.Values{"agent": {agent}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.StartsAt.Equal(a.StartsAt) && final(r) {
			t.Errorf("the run had already ended (%s) when the silence was seen; not shown during the run", r.Outcome)
		}
	}
	if sil.By != "medic" || sil.EndsAt.Sub(sil.StartsAt) < 9*time.Minute {
		t.Errorf("silence %+v: want createdBy medic for 10m", sil)
	}
	r := s.finalRun(t, s.bridges[1], a, 60*time.Second)
	if r.Outcome != runbooks.OutcomeRecovered || !hasStep(r, "silence", true) || !hasStep(r, "unsilence", true) {
		t.Fatalf("silenced run: %s", summarizeRuns([]runbooks.RunRecord{r}))
	}
	// The repair's output had a password: the record has it redacted, in
	// the API and in Redis.
	if st := stepNamed(r, "repair:always"); st == nil || st.Output != "slow repair of sf-sil, login [REDACTED] ok\n" {
		t.Errorf("repair step %+v: want its output redacted", st)
	}
	if raw, err := s.rdb.Get(ctx, "medic:run:"+r.ID).Result(); err != nil || strings.Contains(raw, "hunter2") || !strings.Contains(raw, "[REDACTED]") {
		t.Errorf("medic:run:%s in Redis (%v): %.300s", r.ID, err, raw)
	}
	if !strings.Contains(sil.Comment, r.ID) {
		t.Errorf("silence comment %q does not name run %s", sil.Comment, r.ID)
	}
	var after amSilence
	for _, x := range s.silences(t) {
		if x.ID == sil.ID {
			after = x
		}
	}
	if after.Status.State != "expired" {
		t.Errorf("after the recovery silence %s is %q, want expired", sil.ID, after.Status.State)
	}

	// An escalated run leaves its silence: humans have the escalation.
	esc := s.newAlert("SafetySilenceEscalate", "sf-sil-esc")
	s.fire(t, s.bridges[1], esc)
	re := s.finalRun(t, s.bridges[0], esc, 90*time.Second)
	if re.Outcome != runbooks.OutcomeEscalated || !hasStep(re, "silence", true) || stepNamed(re, "unsilence") != nil {
		t.Fatalf("escalated run: %s", summarizeRuns([]runbooks.RunRecord{re}))
	}
	time.Sleep(500 * time.Millisecond)
	var active []amSilence
	for _, x := range s.silencesOf(t, esc.Labels) {
		if x.Status.State == "active" {
			active = append(active, x)
		}
	}
	if len(active) != 1 || !strings.Contains(active[0].Comment, re.ID) || time.Until(active[0].EndsAt) < 8*time.Minute {
		t.Errorf("after the escalation: active silences %+v, want one of run %s for ~10m", active, re.ID)
	}
	s.wantRemediations(t, "sf-silence", runbooks.OutcomeRecovered, 1)
	s.wantRemediations(t, "sf-silence-escalate", runbooks.OutcomeEscalated, 1)
}

// ---- 6. the global pause.

func safetyPause(t *testing.T, s *safety) {
	const agent = "sf-pause"
	ctx := context.Background()
	paused := func(b *harness.Bridge, runbook string) (float64, error) {
		return scrapeSum(b.URL+"/metrics", "medic_paused", `runbook="`+runbook+`"`)
	}
	waitPaused := func(b *harness.Bridge, runbook string, want float64) {
		t.Helper()
		harness.Eventually(t, 10*time.Second, 100*time.Millisecond, fmt.Sprintf("%s: medic_paused{runbook=%q} %v", b.Name, runbook, want), func() (bool, string) {
			v, err := paused(b, runbook)
			return err == nil && v == want, fmt.Sprint(v, err)
		})
	}
	pid := s.waitUp(t, agent, 60*time.Second)
	waitPaused(s.bridges[1], "*", 0)

	code, body := s.call(t, s.bridges[0], http.MethodPost, "/api/v1/pause", []byte(`{"reason":"e2e freeze","by":"carol"}`))
	if code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, body)
	}
	if n, err := s.rdb.HLen(ctx, "medic:{ctl}:pause").Result(); err != nil || n != 1 {
		t.Errorf("medic:{ctl}:pause has %d fields (%v), want 1", n, err)
	}
	// The other bridge shows it: the pause lives in Redis.
	waitPaused(s.bridges[1], "*", 1)
	waitPaused(s.bridges[1], "sf-pause", 1)
	waitPaused(s.bridges[0], "sf-storm", 1)

	s.kill(t, agent)
	a := s.newAlert("SafetyPause", agent)
	s.fire(t, s.bridges[1], a)
	r := s.finalRun(t, s.bridges[0], a, 60*time.Second)
	if r.Outcome != runbooks.OutcomePaused || acted(r) || len(r.Steps) != 1 || r.Steps[0].Name != "pause" ||
		!strings.HasPrefix(r.Reason, "all runbooks are paused by carol") {
		t.Fatalf("paused run: %q %q %s", r.Outcome, r.Reason, stepNames(r))
	}
	time.Sleep(500 * time.Millisecond)
	if !s.down(t, agent) {
		t.Errorf("%s was restarted during the pause", agent)
	}

	code, body = s.call(t, s.bridges[1], http.MethodDelete, "/api/v1/pause", nil)
	if code != http.StatusOK {
		t.Fatalf("resume: %d %s", code, body)
	}
	waitPaused(s.bridges[0], "*", 0)
	waitPaused(s.bridges[0], "sf-pause", 0)
	a = s.newAlert("SafetyPause", agent)
	s.fire(t, s.bridges[0], a)
	r = s.finalRun(t, s.bridges[1], a, 60*time.Second)
	if r.Outcome != runbooks.OutcomeRecovered || !hasStep(r, "restart", true) {
		t.Fatalf("run after the resume: %s", summarizeRuns([]runbooks.RunRecord{r}))
	}
	if next := s.waitUp(t, agent, 10*time.Second); next == pid {
		t.Errorf("pid %d unchanged after the resume's run", pid)
	}

	// One runbook's pause shows on its own series only.
	code, body = s.call(t, s.bridges[1], http.MethodPost, "/api/v1/pause", []byte(`{"runbook":"sf-pause","for":"10m"}`))
	if code != http.StatusOK {
		t.Fatalf("pause sf-pause: %d %s", code, body)
	}
	waitPaused(s.bridges[0], "sf-pause", 1)
	waitPaused(s.bridges[0], "*", 0)
	waitPaused(s.bridges[0], "sf-storm", 0)
	if code, body = s.call(t, s.bridges[0], http.MethodDelete, "/api/v1/pause?runbook=sf-pause", nil); code != http.StatusOK {
		t.Fatalf("resume sf-pause: %d %s", code, body)
	}
	waitPaused(s.bridges[1], "sf-pause", 0)

	// A pause for a while ends by itself; a misspelt runbook pauses nothing.
	if code, body = s.call(t, s.bridges[0], http.MethodPost, "/api/v1/pause", []byte(`{"runbook":"sf-pasue"}`)); code != http.StatusBadRequest {
		t.Errorf("pause of an unknown runbook: %d %s, want 400", code, body)
	}
	if code, body = s.call(t, s.bridges[0], http.MethodPost, "/api/v1/pause", []byte(`{"for":"2s","reason":"short"}`)); code != http.StatusOK {
		t.Fatalf("pause for 2s: %d %s", code, body)
	}
	waitPaused(s.bridges[1], "*", 1)
	waitPaused(s.bridges[1], "*", 0)
	var left struct {
		Pauses []json.RawMessage `json:"pauses"`
	}
	if err := s.bridges[0].GetJSON(ctx, "/api/v1/pause", &left); err != nil || len(left.Pauses) != 0 {
		t.Errorf("pauses after the timed one ended: %s %v", left.Pauses, err)
	}
	s.wantRemediations(t, "sf-pause", runbooks.OutcomePaused, 1)
	s.wantRemediations(t, "sf-pause", runbooks.OutcomeRecovered, 1)
}

// ---- 2. one restart budget, whichever bridge routes and whichever engine
// process restarts.
//
// The budget is kept per node and agent (medic:{agent:NODE/AGENT}:budget),
// so two nodes never share one: an agent declared without a node runs on
// each node as a separate process with a budget each. What is shared is
// one agent's budget across every engine process that ever restarts it:
// here two runs routed by different bridges, with the node's process
// (and with it its engine and its in-memory state) restarted between them,
// spend the budget of 2, and a third run is refused a restart.

func safetyBudget(t *testing.T, s *safety) {
	const agent = "sf-budget"
	ctx := context.Background()
	key := "medic:{agent:" + sfNodeB + "/" + agent + "}:budget"
	node := s.nodes[sfNodeB]
	s.waitUp(t, agent, 60*time.Second)

	s.kill(t, agent)
	a1 := s.newAlert("SafetyBudget", agent)
	s.fire(t, s.bridges[0], a1)
	r1 := s.finalRun(t, s.bridges[1], a1, 60*time.Second)
	if r1.Outcome != runbooks.OutcomeRecovered || !hasStep(r1, "restart", true) {
		t.Fatalf("first run: %s", summarizeRuns([]runbooks.RunRecord{r1}))
	}
	s.waitUp(t, agent, 10*time.Second)

	// A new engine: the node process restarts (its agents with it).
	before := node.PID()
	node.Restart(t)
	harness.WaitHTTP(t, node.URL+"/-/healthy", 60*time.Second, node.Proc)
	if after := node.PID(); after == before || after <= 1 {
		t.Fatalf("node %s pid %d → %d: not restarted", sfNodeB, before, after)
	}
	s.waitUp(t, agent, 30*time.Second)

	s.kill(t, agent)
	a2 := s.newAlert("SafetyBudget", agent)
	s.fire(t, s.bridges[1], a2)
	r2 := s.finalRun(t, s.bridges[0], a2, 60*time.Second)
	if r2.Outcome != runbooks.OutcomeRecovered || !hasStep(r2, "restart", true) {
		t.Fatalf("second run, on the restarted node: %s", summarizeRuns([]runbooks.RunRecord{r2}))
	}
	s.waitUp(t, agent, 10*time.Second)
	members, err := s.rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil || len(members) != 2 ||
		!strings.HasSuffix(members[0], ":"+r1.ID) || !strings.HasSuffix(members[1], ":"+r2.ID) {
		t.Errorf("%s = %v (%v), want the restarts of runs %s and %s", key, members, err, r1.ID, r2.ID)
	}

	s.kill(t, agent)
	a3 := s.newAlert("SafetyBudget", agent)
	s.fire(t, s.bridges[0], a3)
	r3 := s.finalRun(t, s.bridges[1], a3, 60*time.Second)
	if r3.Outcome != runbooks.OutcomeEscalated || r3.Reason != "restart budget exhausted: 2 in 1h" ||
		!hasStep(r3, "budget", false) || stepNamed(r3, "restart") != nil {
		t.Fatalf("third run: %q %q %s, want escalated without a restart", r3.Outcome, r3.Reason, stepNames(r3))
	}
	time.Sleep(500 * time.Millisecond)
	if !s.down(t, agent) {
		t.Errorf("%s was restarted past its budget", agent)
	}
	if n, err := s.rdb.ZCard(ctx, key).Result(); err != nil || n != 2 {
		t.Errorf("%s holds %d restarts (%v) after the refused one, want 2", key, n, err)
	}
	// The restarted node counts from zero; the refused run is its second.
	s.wantRemediations(t, "sf-budget", runbooks.OutcomeEscalated, 1)
}
