package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/simulate"
)

// backtestEstate has one runbook with a circuit and one with a
// concurrency limit, for four agents on four nodes.
const backtestEstate = `
agent "a1" {
  node    = "n1"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}
agent "a2" {
  node    = "n2"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}
agent "a3" {
  node    = "n3"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}
agent "a4" {
  node    = "n4"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}

runbook "guarded" {
  match {
    alertname = "AgentFlapping"
  }
  circuit {
    max_runs = 2
    window   = "1d"
  }
  budget {
    restarts = 100
    window   = "1h"
  }
}

runbook "serial" {
  match {
    alertname = "AgentStuck"
  }
  concurrency {
    max  = 1
    wait = "5m"
  }
}
`

// TestBacktestReplaysPrometheusHistory backfills a real Prometheus with
// seven days of ALERTS series (promtool tsdb create-blocks-from
// openmetrics), runs the built `medic backtest` against it and checks
// every count: the circuit (2 runs a day per agent) holds back the third
// and later runs of a day, the concurrency limit (1 at a time, 5m wait,
// runs lasting 10m) lets one of four simultaneous runs act.
func TestBacktestReplaysPrometheusHistory(t *testing.T) {
	promtool := harness.LookPath(t, "promtool")
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Minute)
	base := now.Add(-7*24*time.Hour + 30*time.Minute)
	at := func(day, hour, minute int) time.Time {
		return base.Add(time.Duration(day)*24*time.Hour + time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)
	}
	type episode struct {
		labels string
		start  time.Time
	}
	var eps []episode
	add := func(labels string, starts ...time.Time) {
		for _, s := range starts {
			eps = append(eps, episode{labels, s})
		}
	}
	flap := func(agent, node string) string {
		return fmt.Sprintf(`alertname="AgentFlapping",agent=%q,node=%q,severity="page"`, agent, node)
	}
	stuck := func(agent, node string) string {
		return fmt.Sprintf(`alertname="AgentStuck",agent=%q,node=%q`, agent, node)
	}
	// guarded: a1 five times on day 0 (2 act, 3 circuit open), a2 twice
	// on day 1 (2 act), a3 three times on day 2 (2 act, 1 open) and once
	// on day 4, the window passed (1 act).
	add(flap("a1", "n1"), at(0, 1, 0), at(0, 2, 0), at(0, 3, 0), at(0, 4, 0), at(0, 5, 0))
	add(flap("a2", "n2"), at(1, 1, 0), at(1, 3, 0))
	add(flap("a3", "n3"), at(2, 1, 0), at(2, 2, 0), at(2, 3, 0), at(4, 1, 0))
	// An agent nobody configured, without a node label: unroutable.
	add(`alertname="AgentFlapping",agent="ghost"`, at(1, 6, 0))
	// No runbook matches: unmatched.
	add(`alertname="DiskSpaceLow",agent="a4",node="n4"`, at(3, 2, 0))
	// serial: four agents at once (1 acts, 3 limited), then two apart
	// (both act).
	for i := 1; i <= 4; i++ {
		add(stuck(fmt.Sprintf("a%d", i), fmt.Sprintf("n%d", i)), at(5, 10, 0))
	}
	add(stuck("a1", "n1"), at(5, 12, 0))
	add(stuck("a2", "n2"), at(5, 12, 20))

	// Each episode fires for 10 minutes, a point a minute; one label
	// set's episodes are an hour or more apart, far more than the 5m
	// lookback that blurs the end of a backfilled series.
	series := map[string][]time.Time{}
	for _, e := range eps {
		for m := 0; m < 10; m++ {
			series[e.labels] = append(series[e.labels], e.start.Add(time.Duration(m)*time.Minute))
		}
	}
	var keys []string
	for k := range series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var om strings.Builder
	om.WriteString("# HELP ALERTS Alert states.\n# TYPE ALERTS gauge\n")
	for _, k := range keys {
		ts := series[k]
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for _, t := range ts {
			fmt.Fprintf(&om, "ALERTS{%s,alertstate=\"firing\"} 1 %d\n", k, t.Unix())
		}
	}
	om.WriteString("# EOF\n")
	omFile := filepath.Join(dir, "alerts.om")
	if err := os.WriteFile(omFile, []byte(om.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, promtool, "tsdb", "create-blocks-from", "openmetrics", omFile, data).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	prom := harness.StartPrometheus(t, harness.PrometheusOptions{DataDir: data, Interval: time.Minute})

	cfgDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "estate.hcl"), []byte(backtestEstate), 0o644); err != nil {
		t.Fatal(err)
	}
	backtest := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bins.Medic, append([]string{"backtest", "--config.file=" + cfgDir, "--prometheus.url=" + prom.URL, "--run-duration=10m"}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("medic backtest %v: %v\n%s\n%s", args, err, out, stderr.String())
		}
		return string(out)
	}

	checkBacktestJSON(t, backtest("--format=json"))

	text := backtest()
	t.Logf("medic backtest:\n%s", text)
	for _, want := range []string{
		"19 episodes: 1 unmatched (no runbook), 1 unroutable (no node)",
		"guarded  11    3       1     7          0        4             0                 0         0                 -",
		"serial   6     2       1     3          3        0             0                 0         0                 -",
		"top agents by runs:\n  n1  a1  7\n  n3  a3  5\n  n2  a2  4\n  n4  a4  1\n",
		"runs per hour: 17 runs over 168 h",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
}

// checkBacktestJSON checks the counts both backtests of the same history
// must report.
func checkBacktestJSON(t *testing.T, out string) {
	t.Helper()
	var rep simulate.BacktestReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--format=json: %v\n%s", err, out)
	}
	want := []simulate.RunbookSummary{
		{Runbook: "guarded", Runs: 11, Agents: 3, PeakConcurrency: 1,
			Outcomes: simulate.BacktestOutcome{WouldAct: 7, CircuitOpen: 4}},
		{Runbook: "serial", Runs: 6, Agents: 2, PeakConcurrency: 1,
			Outcomes: simulate.BacktestOutcome{WouldAct: 3, Limited: 3}},
	}
	if diff := cmp.Diff(want, rep.Runbooks); diff != "" {
		t.Errorf("runbooks (-want +got):\n%s\n%s", diff, out)
	}
	if rep.Episodes != 19 || rep.Unmatched != 1 || rep.Unroutable != 1 {
		t.Errorf("episodes %d unmatched %d unroutable %d, want 19, 1, 1\n%s", rep.Episodes, rep.Unmatched, rep.Unroutable, out)
	}
	wantAgents := []simulate.AgentRuns{
		{Node: "n1", Agent: "a1", Runs: 7}, {Node: "n3", Agent: "a3", Runs: 5},
		{Node: "n2", Agent: "a2", Runs: 4}, {Node: "n4", Agent: "a4", Runs: 1},
	}
	if diff := cmp.Diff(wantAgents, rep.Agents); diff != "" {
		t.Errorf("agents (-want +got):\n%s", diff)
	}
	// The exact JSON shape of docs/design.md §9.
	var shape map[string]any
	_ = json.Unmarshal([]byte(out), &shape)
	var top []string
	for k := range shape {
		top = append(top, k)
	}
	sort.Strings(top)
	if got := strings.Join(top, ","); got != "agents,episodes,from,runbooks,to,unmatched,unroutable" {
		t.Errorf("top-level keys %s", got)
	}

}

// TestBacktestREADMEExample runs the README's backtest example as it is
// written: the history of deploy/examples/backtest/alerts.om (fixed
// dates, hence the long retention), the estate beside it, the same flags.
func TestBacktestREADMEExample(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ex := filepath.Join(root, "deploy", "examples", "backtest")
	data := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, harness.LookPath(t, "promtool"), "tsdb", "create-blocks-from", "openmetrics",
		filepath.Join(ex, "alerts.om"), data).CombinedOutput(); err != nil {
		t.Fatalf("promtool: %v\n%s", err, out)
	}
	prom := harness.StartPrometheus(t, harness.PrometheusOptions{DataDir: data, Interval: time.Minute,
		Args: []string{"--storage.tsdb.retention.time=100y"}})
	cmd := exec.CommandContext(ctx, bins.Medic, "backtest", "--config.file="+filepath.Join(ex, "estate.hcl"),
		"--prometheus.url="+prom.URL, "--from=2026-11-02T00:00:00Z", "--to=2026-11-09T00:00:00Z", "--run-duration=10m", "--format=json")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("medic backtest: %v\n%s", err, out)
	}
	checkBacktestJSON(t, string(out))
}
