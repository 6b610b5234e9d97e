package hcl

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/medicops/medic/alert"
)

// estate loads the example estate with the runbook library, as the README
// tells users to.
func estate(t testing.TB) *Config {
	t.Helper()
	cfg, diags := LoadPaths("../deploy/examples/estate.hcl", "../runbooks/library")
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatalf("loading the estate and the library: %v", diags)
	}
	return cfg
}

func TestGoodFilesLoadWithoutDiagnostics(t *testing.T) {
	goods, _ := filepath.Glob("testdata/good/*.hcl")
	library, _ := filepath.Glob("../runbooks/library/*.hcl")
	library = slices.DeleteFunc(library, IsTestFile) // their tests (medic test)
	if len(goods) < 2 || len(library) != 3 {
		t.Fatalf("good files %v, library %v", goods, library)
	}
	cases := [][]string{{"../deploy/examples/estate.hcl", "../runbooks/library"}}
	for _, g := range goods {
		cases = append(cases, []string{g})
	}
	for _, l := range library {
		// Each library file must also load on its own: the estate only adds
		// agents and pools.
		cases = append(cases, []string{l})
	}
	for _, paths := range cases {
		t.Run(strings.Join(paths, "+"), func(t *testing.T) {
			cfg, diags := LoadPaths(paths...)
			if cfg == nil || len(diags) > 0 {
				t.Fatalf("LoadPaths(%v): %v", paths, diags)
			}
		})
	}
}

// decoded is the comparable projection of a config (expressions shown as
// their source text).
type decoded struct {
	Agents   []Agent
	Runbooks []decodedRunbook
	Pools    []decodedPool
}

type decodedRunbook struct {
	Name       string
	Match      map[string]string
	Matchers   []string
	Agent      string
	Causes     []decodedCause
	Verify     Verify
	Escalate   *Escalate
	Budget     Budget
	Switchover string
}

type decodedCause struct {
	Name, When string
	Repair     []string
	Timeout    time.Duration
}

type decodedPool struct {
	Name          string
	Agents        []string
	CheckInterval time.Duration
	DeviceURL     string
}

func project(cfg *Config) decoded {
	var d decoded
	for _, a := range cfg.Agents {
		c := *a
		c.DeclRange = hcl2.Range{}
		if c.Probe != nil && c.Probe.ExpectBody != nil {
			p := *c.Probe
			p.ExpectBody = nil
			p.URL += " body~" + c.Probe.ExpectBody.String()
			c.Probe = &p
		}
		d.Agents = append(d.Agents, c)
	}
	text := func(e hcl2.Expression) string {
		if e == nil {
			return ""
		}
		return cfg.SourceText(e.Range())
	}
	for _, rb := range cfg.Runbooks {
		r := decodedRunbook{Name: rb.Name, Match: rb.Match, Agent: text(rb.AgentExpr), Verify: rb.Verify, Escalate: rb.Escalate, Budget: rb.Budget}
		for _, m := range rb.Matchers {
			r.Matchers = append(r.Matchers, m.String())
		}
		for _, c := range rb.Causes {
			r.Causes = append(r.Causes, decodedCause{c.Name, text(c.When), c.Repair, c.Timeout})
		}
		if rb.Switchover != nil {
			r.Switchover = "switchover " + text(rb.Switchover.Pool)
		}
		d.Runbooks = append(d.Runbooks, r)
	}
	for _, p := range cfg.Pools {
		d.Pools = append(d.Pools, decodedPool{p.Name, p.Agents, p.CheckInterval, text(p.DeviceURL)})
	}
	return d
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		file string
		want decoded
	}{
		{
			file: "testdata/good/minimal.hcl",
			want: decoded{
				Agents: []Agent{
					{Name: "a", Command: []string{"/bin/a"}, Thresholds: Thresholds{0.80, 0.80, 0.99}, Watchdog: true},
					{Name: "b", Pidfile: "/run/b.pid", Start: []string{"/usr/sbin/service", "b", "start"}, Thresholds: Thresholds{0.80, 0.80, 0.99}, Watchdog: false},
				},
				Runbooks: []decodedRunbook{{
					Name:   "r",
					Match:  map[string]string{"alertname": "A"},
					Causes: []decodedCause{{Name: "mem", When: "usage.memory > agent.thresholds.memory", Timeout: 30 * time.Second}},
					Verify: Verify{Attempts: 3, Interval: 2 * time.Second},
					Budget: Budget{Restarts: 3, Window: time.Hour},
				}},
				Pools: []decodedPool{{Name: "p", Agents: []string{"a"}, CheckInterval: 2 * time.Second, DeviceURL: `"http://${device}.example/api"`}},
			},
		},
		{
			file: "testdata/good/full.hcl",
			want: decoded{
				Agents: []Agent{
					{
						Name: "web", Node: "web-01", Command: []string{"/opt/web/bin/web", "--port", "8081"},
						Workdir: "/var/lib/web", Env: map[string]string{"LOG_LEVEL": "debug", "GOMAXPROCS": "2"},
						Heartbeat: &Heartbeat{Timeout: 20 * time.Second},
						Probe: &Probe{Kind: "http", URL: "http://127.0.0.1:8081/healthz body~^ok", Timeout: time.Second, Interval: 5 * time.Second,
							ExpectStatus: 204},
						Thresholds: Thresholds{0.7, 0.9, 0.95},
						Watchdog:   false,
					},
					{
						Name: "db", Pidfile: "/run/db.pid", Start: []string{"systemctl", "start", "db"}, Stop: []string{"systemctl", "stop", "db"},
						Probe:      &Probe{Kind: "tcp", Address: "127.0.0.1:5432", Timeout: 2 * time.Second, Interval: 10 * time.Second},
						Thresholds: Thresholds{0.80, 0.80, 0.99},
					},
					{
						Name: "batch", Command: []string{"/opt/batch/run"},
						Probe:      &Probe{Kind: "exec", Command: []string{"/opt/batch/check", "--quick"}, Timeout: 3 * time.Second, Interval: 10 * time.Second},
						Thresholds: Thresholds{0.80, 0.80, 0.99},
						Watchdog:   true,
					},
				},
				Runbooks: []decodedRunbook{
					{
						Name:     "web-recovery",
						Match:    map[string]string{"alertname": "MedicAgentDown", "team": "web"},
						Matchers: []string{`severity=~"critical|page"`},
						Agent:    `lookup(alert.labels, "service", "web")`,
						Causes: []decodedCause{
							{Name: "memory", When: "usage.memory > agent.thresholds.memory && usage.host.memory > 0.5", Repair: []string{"/opt/medic/repair/memory.sh", "--drop-caches"}, Timeout: 45 * time.Second},
							{Name: "noisy", When: `contains(keys(alert.annotations), "noisy") || can(regex("^db", agent.name))`, Timeout: 30 * time.Second},
						},
						Verify:   Verify{Attempts: 5, Interval: 3 * time.Second},
						Escalate: &Escalate{Webhook: "https://oncall.example/hooks/medic", Command: []string{"/opt/medic/page.sh"}, Timeout: 20 * time.Second, RetryFor: 2 * time.Minute},
						Budget:   Budget{Restarts: 1, Window: 30 * time.Minute},
					},
					{
						Name:       "db-switch",
						Matchers:   []string{`alertname="MedicPoolAgentDown"`, `pool="dbs"`},
						Verify:     Verify{Attempts: 3, Interval: 2 * time.Second},
						Budget:     Budget{Restarts: 3, Window: time.Hour},
						Switchover: `switchover "dbs"`,
					},
				},
				Pools: []decodedPool{{Name: "dbs", Agents: []string{"db", "batch"}, CheckInterval: 500 * time.Millisecond, DeviceURL: `"https://gw.example/devices/${upper(device)}/config"`}},
			},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cfg, diags := Load(tc.file)
			if len(diags) > 0 {
				t.Fatal(diags)
			}
			if diff := cmp.Diff(tc.want, project(cfg), cmpopts.IgnoreUnexported(Agent{})); diff != "" {
				t.Errorf("decoded %s (-want +got):\n%s", tc.file, diff)
			}
		})
	}
}

func TestLoadDirectoryInNameOrder(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"b.hcl":      `runbook "second" { matchers = ["x=\"1\""] }`,
		"a.hcl":      `runbook "first" { matchers = ["x=~\".+\""] }`,
		"ignore.txt": `not hcl`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, diags := Load(dir)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	rb, _ := cfg.Match(alert.Alert{Labels: map[string]string{"x": "1"}})
	if rb == nil || rb.Name != "first" || len(cfg.Runbooks) != 2 || len(cfg.Sources) != 2 {
		t.Fatalf("got %v from %d runbooks, %d sources; want first of 2 from a.hcl", rb, len(cfg.Runbooks), len(cfg.Sources))
	}

	if cfg, diags := LoadPaths(dir, filepath.Join(dir, "a.hcl"), dir); diags.HasErrors() || len(cfg.Runbooks) != 2 {
		t.Errorf("naming files twice: %v", diags)
	}

	empty := t.TempDir()
	if _, diags := Load(empty); DiagnosticLine(diags[0]) != empty+":1:1: error: No configuration files" {
		t.Errorf("empty dir: %v", diags)
	}
	if _, diags := Load(filepath.Join(empty, "missing.hcl")); !diags.HasErrors() {
		t.Error("missing file loaded without error")
	}
}

func TestDiagnosticDetails(t *testing.T) {
	for _, tc := range []struct{ file, detail string }{
		{"unknown-block.hcl", `Did you mean "runbook"?`},
		{"unknown-agent-attribute.hcl", `Did you mean "command"?`},
		{"unknown-probe-kind.hcl", `Did you mean "http"?`},
		{"unknown-variable.hcl", `There is no variable named "usge". Did you mean "usage"?`},
		{"unknown-usage-field.hcl", `usage has no attribute "mem". Did you mean "memory"?`},
		{"unknown-agent-field.hcl", `agent has no attribute "threshold". Did you mean "thresholds"?`},
		{"unknown-threshold-field.hcl", `agent.thresholds has no attribute "ram". It has cpu, disk and memory.`},
		{"unknown-alert-field.hcl", `alert has no attribute "label". Did you mean "labels"?`},
		{"runbook-unknown-agent.hcl", `No agent "ops-agnet" is defined in the loaded files. Did you mean "ops-agent"?`},
		{"switchover-unknown-pool.hcl", `Did you mean "switches"?`},
		{"runbook-agent-uses-usage.hcl", `This expression can refer to alert.`},
		{"duplicate-agent-across-files", `first defined at testdata/bad/duplicate-agent-across-files/a.hcl:1,1`},
		{"duplicate-runbook.hcl", `first defined at testdata/bad/duplicate-runbook.hcl:1,1`},
		{"when-not-bool.hcl", `The value of when must be a bool; this expression is a number.`},
		{"ratio-out-of-range.hcl", `memory is a ratio and must lie between 0 and 1 (0.80 means 80%), not 80.`},
		{"when-unknown-function.hcl", `Did you mean "length"?`},
		{"invalid-matcher.hcl", `"alertname=~\"(\"" is not an Alertmanager matcher`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, diags := LoadPaths(filepath.Join("testdata/bad", tc.file))
			for _, d := range diags {
				if strings.Contains(d.Detail, tc.detail) {
					return
				}
			}
			t.Errorf("no diagnostic detail contains %q: %v", tc.detail, diags)
		})
	}
}

func TestMatch(t *testing.T) {
	cfg := estate(t)
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		want    string
		skipped []string
	}{
		{"agent down", map[string]string{"alertname": "MedicAgentDown", "agent": "ops-agent"}, "agent-recovery", nil},
		{"disk full", map[string]string{"alertname": "MedicAgentDiskFull", "agent": "ops-agent"}, "agent-recovery", nil},
		{"heartbeat", map[string]string{"alertname": "MedicAgentHeartbeatMissed", "agent": "ops-agent"}, "heartbeat-restart",
			[]string{`runbook "agent-recovery": matcher alertname=~"MedicAgent(Down|ProbeFailing|MemoryHigh|CPUHigh|DiskFull)" does not hold`}},
		{"pool", map[string]string{"alertname": "MedicPoolAgentDown", "agent": "cfg-agent-1", "pool": "switches"}, "pool-switchover",
			[]string{
				`runbook "agent-recovery": matcher alertname=~"MedicAgent(Down|ProbeFailing|MemoryHigh|CPUHigh|DiskFull)" does not hold`,
				`runbook "heartbeat-restart": label alertname is not "MedicAgentHeartbeatMissed"`,
			}},
		{"regex is anchored", map[string]string{"alertname": "MedicAgentDownAgain"}, "", []string{
			`runbook "agent-recovery": matcher alertname=~"MedicAgent(Down|ProbeFailing|MemoryHigh|CPUHigh|DiskFull)" does not hold`,
			`runbook "heartbeat-restart": label alertname is not "MedicAgentHeartbeatMissed"`,
			`runbook "pool-switchover": label alertname is not "MedicPoolAgentDown"`,
		}},
		{"no labels", nil, "", []string{
			`runbook "agent-recovery": matcher alertname=~"MedicAgent(Down|ProbeFailing|MemoryHigh|CPUHigh|DiskFull)" does not hold`,
			`runbook "heartbeat-restart": label alertname is not "MedicAgentHeartbeatMissed"`,
			`runbook "pool-switchover": label alertname is not "MedicPoolAgentDown"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb, skipped := cfg.Match(alert.Alert{Labels: tc.labels, Status: "firing"})
			got := ""
			if rb != nil {
				got = rb.Name
			}
			if got != tc.want {
				t.Errorf("Match = %q, want %q", got, tc.want)
			}
			if diff := cmp.Diff(tc.skipped, skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatchesHandBuiltRunbook(t *testing.T) {
	ms, _, err := parseMatchers(`severity=~"critical|page", team!="db"`)
	if err != nil {
		t.Fatal(err)
	}
	rb := &Runbook{Name: "hand", Match: map[string]string{"alertname": "X", "env": "prod"}, Matchers: ms}
	for _, tc := range []struct {
		labels map[string]string
		ok     bool
		reason string
	}{
		{map[string]string{"alertname": "X", "env": "prod", "severity": "page"}, true, ""},
		{map[string]string{"alertname": "Y", "env": "dev"}, false, `label alertname is not "X"`},
		{map[string]string{"alertname": "X", "env": "dev"}, false, `label env is not "prod"`},
		{map[string]string{"alertname": "X", "env": "prod", "severity": "info"}, false, `matcher severity=~"critical|page" does not hold`},
		{map[string]string{"alertname": "X", "env": "prod", "severity": "page", "team": "db"}, false, `matcher team!="db" does not hold`},
	} {
		ok, reason := rb.Matches(tc.labels)
		if ok != tc.ok || reason != tc.reason {
			t.Errorf("Matches(%v) = %v, %q; want %v, %q", tc.labels, ok, reason, tc.ok, tc.reason)
		}
	}
}

func TestClassicMatcherWarns(t *testing.T) {
	cfg, diags := LoadSources([]Source{{Name: "m.hcl", Bytes: []byte(`runbook "r" { matchers = ["alertname=Foo Bar"] }`)}})
	if cfg == nil || len(diags) != 1 || diags[0].Severity != hcl2.DiagWarning || DiagnosticLine(diags[0]) != "m.hcl:1:27: warning: Matcher uses the classic syntax" {
		t.Fatalf("diags = %v", diags)
	}
	if rb, _ := cfg.Match(alert.Alert{Labels: map[string]string{"alertname": "Foo Bar"}}); rb == nil {
		t.Error("classic matcher does not match")
	}
}

func TestCauseEval(t *testing.T) {
	cfg := estate(t)
	rb := cfg.Runbooks[0]
	alert := alert.Alert{Labels: map[string]string{"alertname": "MedicAgentDown", "agent": "log-shipper"}, Status: "firing"}
	for _, tc := range []struct {
		name  string
		agent *Agent
		usage Usage
		want  []string
	}{
		{"healthy", cfg.Agent("ops-agent"), Usage{Memory: 0.5, CPU: 0.5, Disk: 0.5}, nil},
		{"memory just over", cfg.Agent("ops-agent"), Usage{Memory: 0.81}, []string{"memory"}},
		{"memory at threshold does not count", cfg.Agent("ops-agent"), Usage{Memory: 0.80}, nil},
		{"per-agent threshold", cfg.Agent("log-shipper"), Usage{Memory: 0.85}, nil},
		{"all three", cfg.Agent("ops-agent"), Usage{Memory: 0.9, CPU: 0.95, Disk: 0.995}, []string{"memory", "cpu", "disk"}},
		{"unknown agent gets default thresholds", nil, Usage{CPU: 0.81}, []string{"cpu"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := EvalContext(alert, tc.agent, tc.usage)
			var got []string
			for _, c := range rb.Causes {
				ok, diags := c.Eval(ctx)
				if diags.HasErrors() {
					t.Fatalf("cause %s: %v", c.Name, diags)
				}
				if ok {
					got = append(got, c.Name)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("causes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCauseEvalSeesAlertAndAgent(t *testing.T) {
	src := `
agent "a" {
  command = ["/bin/a"]
  env     = { TIER = "gold" }
}
runbook "r" {
  match { alertname = "A" }
  cause "gold-in-prod" {
    when = alert.labels.env == "prod" && agent.env.TIER == "gold" && alert.status == "firing" && startswith(alert.starts_at, "2026-")
  }
  cause "missing-label" {
    when = alert.labels.nope == "x"
  }
  cause "missing-label-safe" {
    when = lookup(alert.labels, "nope", "") == "" && alert.fingerprint == "fp1"
  }
}`
	// startswith is not in the function table, and it hides behind &&,
	// which short-circuits on unknown values: the loader must still say so.
	_, diags := LoadSources([]Source{{Name: "e.hcl", Bytes: []byte(src)}})
	if len(diags) != 1 || DiagnosticLine(diags[0]) != "e.hcl:9:98: error: Call to unknown function" {
		t.Fatalf("diags = %v", diags)
	}
	src = strings.Replace(src, `startswith(alert.starts_at, "2026-")`, `substr(alert.starts_at, 0, 5) == "2026-"`, 1)
	cfg, diags := LoadSources([]Source{{Name: "e.hcl", Bytes: []byte(src)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	alert := alert.Alert{Labels: map[string]string{"alertname": "A", "env": "prod"}, Status: "firing",
		StartsAt: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), Fingerprint: "fp1"}
	ctx := EvalContext(alert, cfg.Agent("a"), Usage{})
	rb := cfg.Runbooks[0]
	if ok, diags := rb.Causes[0].Eval(ctx); !ok || diags.HasErrors() {
		t.Errorf("gold-in-prod = %v, %v; want true", ok, diags)
	}
	// A missing label is an evaluation error, not a silent false: the engine
	// records it; lookup() is the safe spelling.
	if ok, diags := rb.Causes[1].Eval(ctx); ok || !diags.HasErrors() {
		t.Errorf("missing-label = %v, %v; want an error", ok, diags)
	}
	if ok, diags := rb.Causes[2].Eval(ctx); !ok || diags.HasErrors() {
		t.Errorf("missing-label-safe = %v, %v; want true", ok, diags)
	}
}

func TestTargetAgentAndPoolName(t *testing.T) {
	cfg, diags := Load("testdata/good/full.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	web, dbs := cfg.Runbooks[0], cfg.Runbooks[1]
	lib := estate(t)
	for _, tc := range []struct {
		name   string
		get    func(alert.Alert) (string, error)
		labels map[string]string
		want   string
		err    string
	}{
		{"expression", web.TargetAgent, map[string]string{"service": "api"}, "api", ""},
		{"expression default", web.TargetAgent, map[string]string{}, "web", ""},
		{"default label", lib.Runbooks[1].TargetAgent, map[string]string{"agent": "ops-agent"}, "ops-agent", ""},
		{"default label missing", lib.Runbooks[1].TargetAgent, map[string]string{}, "", `the alert has no "agent" label`},
		{"library explicit label missing", lib.Runbooks[0].TargetAgent, map[string]string{}, "", "Missing map element"},
		{"static pool", dbs.Switchover.PoolName, map[string]string{"pool": "other"}, "dbs", ""},
		{"pool label", lib.Runbooks[2].Switchover.PoolName, map[string]string{"pool": "switches"}, "switches", ""},
		{"default pool label", (&Switchover{}).PoolName, map[string]string{"pool": "p1"}, "p1", ""},
		{"default pool label missing", (&Switchover{}).PoolName, nil, "", `the alert has no "pool" label`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.get(alert.Alert{Labels: tc.labels})
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestDeviceURLFor(t *testing.T) {
	cfg, _ := Load("testdata/good/full.hcl")
	lib := estate(t)
	for _, tc := range []struct {
		pool   *Pool
		device string
		want   string
	}{
		{lib.Pool("switches"), "sw-1", "http://sw-1.switches.example/api/config"},
		{cfg.Pool("dbs"), "db7", "https://gw.example/devices/DB7/config"},
	} {
		got, err := tc.pool.DeviceURLFor(tc.device)
		if err != nil || got != tc.want {
			t.Errorf("DeviceURLFor(%q) = %q, %v; want %q", tc.device, got, err, tc.want)
		}
	}
	if _, err := (&Pool{Name: "x"}).DeviceURLFor("d"); err == nil {
		t.Error("a pool without device_url rendered a URL")
	}
}

func TestFunctionsHaveNoSideEffects(t *testing.T) {
	for _, name := range []string{"file", "fileexists", "templatefile", "timestamp", "uuid", "env", "range", "chunklist", "setproduct", "indent"} {
		if _, ok := functions[name]; ok {
			t.Errorf("function %s is available to expressions", name)
		}
	}
	if len(FunctionNames()) < 40 {
		t.Errorf("only %d functions", len(FunctionNames()))
	}
	for _, tc := range []struct{ node, want, err string }{
		{`format("%s-%03d", "web", 7)`, "web-007", ""},
		{`format("%-1024s|", "x")`, "x" + strings.Repeat(" ", 1023) + "|", ""},
		{`format("%999999999s", "x")`, "", "widths and precisions above 1024 are not supported"},
		{`format("%.99999f", 1)`, "", "widths and precisions above 1024 are not supported"},
		{`formatlist("%5000s", ["a"])[0]`, "", "widths and precisions above 1024 are not supported"},
	} {
		cfg, diags := LoadSources([]Source{{Name: "f.hcl", Bytes: []byte("agent \"a\" {\n  command = [\"/bin/a\"]\n  node = " + tc.node + "\n}\n")}})
		switch {
		case tc.err == "" && (diags.HasErrors() || cfg.Agents[0].Node != tc.want):
			t.Errorf("node = %s: %v", tc.node, diags)
		case tc.err != "" && (!diags.HasErrors() || !strings.Contains(diags[0].Detail, tc.err)):
			t.Errorf("node = %s: %v, want %q", tc.node, diags, tc.err)
		}
	}
}

func TestWriteDiagnostics(t *testing.T) {
	src := "runbook \"r\" {\n  match { alertname = \"A\" }\n  cause \"m\" {\n\twhen = usage.mem > 0.5\n  }\n}\n"
	_, diags := LoadSources([]Source{{Name: "s.hcl", Bytes: []byte(src)}})
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, diags, map[string][]byte{"s.hcl": []byte(src)}); err != nil {
		t.Fatal(err)
	}
	want := "s.hcl:4:15: error: Unknown attribute\n" +
		"  usage has no attribute \"mem\". Did you mean \"memory\"? It has cpu, disk, host and memory.\n" +
		"    4 | \twhen = usage.mem > 0.5\n" +
		"      | \t             ^~~\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	js := DiagnosticsJSON(diags)
	wantJS := []DiagnosticJSON{{File: "s.hcl", Line: 4, Column: 15, EndLine: 4, EndColumn: 18, Severity: "error", Summary: "Unknown attribute", Detail: diags[0].Detail}}
	if diff := cmp.Diff(wantJS, js); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	if got := DiagnosticsJSON(nil); got == nil || len(got) != 0 {
		t.Errorf("DiagnosticsJSON(nil) = %#v, want an empty list", got)
	}
}

func TestFormat(t *testing.T) {
	ugly := Source{Name: "u.hcl", Bytes: []byte("agent \"a\" {\ncommand=[\"/bin/a\"]\n   workdir = \"/w\"\n}\n")}
	got, diags := Format(ugly)
	want := "agent \"a\" {\n  command = [\"/bin/a\"]\n  workdir = \"/w\"\n}\n"
	if diags.HasErrors() || string(got) != want {
		t.Errorf("Format = %q, %v; want %q", got, diags, want)
	}
	if again, _ := Format(Source{Name: "u.hcl", Bytes: got}); !bytes.Equal(again, got) {
		t.Error("Format is not idempotent")
	}
	if _, diags := Format(Source{Name: "bad.hcl", Bytes: []byte("agent \"a\" {\n")}); !diags.HasErrors() {
		t.Error("Format accepted a file that does not parse")
	}
	for _, p := range append(mustGlob(t, "../runbooks/library/*.hcl"), "../deploy/examples/estate.hcl") {
		b, _ := os.ReadFile(p)
		if out, _ := Format(Source{Name: p, Bytes: b}); !bytes.Equal(out, b) {
			t.Errorf("%s is not in canonical format (run medic fmt)", p)
		}
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v %v", pattern, m, err)
	}
	return m
}

// TestMatchIndexAgreesWithScan checks the loader's match index against the
// plain scan a hand-built Config uses, over runbooks that mix match blocks,
// equality and regex matchers, with and without alertname.
func TestMatchIndexAgreesWithScan(t *testing.T) {
	shapes := []func(n, t int) string{
		func(n, t int) string { return fmt.Sprintf("match {\n    alertname = \"A%d\"\n  }", n) },
		func(n, t int) string {
			return fmt.Sprintf("match {\n    alertname = \"A%d\"\n    team = \"t%d\"\n  }", n, t)
		},
		func(n, t int) string { return fmt.Sprintf(`matchers = ["alertname=\"A%d\""]`, n) },
		func(n, t int) string { return fmt.Sprintf(`matchers = ["alertname=~\"A%d|B.*\""]`, n) },
		func(n, t int) string { return fmt.Sprintf(`matchers = ["team=\"t%d\""]`, t) },
		func(n, t int) string {
			return fmt.Sprintf("match {\n    team = \"t%d\"\n  }\n  matchers = [\"alertname=\\\"A%d\\\"\"]", t, n)
		},
		func(n, t int) string { return fmt.Sprintf(`matchers = ["alertname!=\"A%d\"", "team=\"t1\""]`, n) },
	}
	var b strings.Builder
	for i := 0; i < 70; i++ {
		fmt.Fprintf(&b, "runbook \"rb-%d\" {\n  %s\n}\n", i, shapes[i%len(shapes)](i%5, i%3))
	}
	cfg, diags := LoadSources([]Source{{Name: "m.hcl", Bytes: []byte(b.String())}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	scan := &Config{Runbooks: cfg.Runbooks}
	checked := 0
	for _, name := range []string{"A0", "A1", "A3", "A4", "B7", "C", ""} {
		for _, team := range []string{"t0", "t1", "t2", ""} {
			lbls := map[string]string{}
			if name != "" {
				lbls["alertname"] = name
			}
			if team != "" {
				lbls["team"] = team
			}
			a := alert.Alert{Labels: lbls}
			rb1, sk1 := cfg.Match(a)
			rb2, sk2 := scan.Match(a)
			if rb1 != rb2 {
				t.Errorf("%v: index matched %v, scan %v", lbls, rb1, rb2)
			}
			if diff := cmp.Diff(sk2, sk1); diff != "" {
				t.Errorf("%v: skipped (-scan +index):\n%s", lbls, diff)
			}
			checked++
		}
	}
	if checked != 28 {
		t.Fatal(checked)
	}
}
