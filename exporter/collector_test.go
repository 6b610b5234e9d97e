package exporter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/probe"
)

func TestCollectorsLintClean(t *testing.T) {
	def, _ := testAgent(t, "linted")
	def.Heartbeat = &hcl.Heartbeat{Timeout: time.Minute}
	n := startNode(t, Options{Config: configOf(def)}, nil)
	n.waitServing(t, "linted")
	problems, err := testutil.CollectAndLint(n.collector)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Every documented family is there for a running, probed, guarded agent.
	mfs, err := n.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"medic_agent_up", "medic_agent_probe_success", "medic_agent_probe_duration_seconds",
		"medic_agent_cpu_seconds_total", "medic_agent_resident_memory_bytes", "medic_agent_memory_ratio",
		"medic_agent_disk_used_ratio", "medic_agent_heartbeat_age_seconds", "medic_agent_heartbeat_timeout_seconds",
		"medic_agent_restarts_total", "medic_scrape_collector_success", "medic_scrape_collector_duration_seconds",
	} {
		if !got[name] {
			t.Errorf("%s missing", name)
		}
	}
	if v := gaugeValue(t, mfs, "medic_agent_resident_memory_bytes", "linted"); v < 1<<20 {
		t.Errorf("resident memory %v", v)
	}
}

func gaugeValue(t *testing.T, mfs []*dto.MetricFamily, name, agent string) float64 {
	t.Helper()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "agent" && l.GetValue() == agent {
					if m.Gauge != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{agent=%q} not found", name, agent)
	return 0
}

func TestCollectorsGatherAndCompare(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	pass := &hcl.Probe{Kind: probe.Exec, Command: []string{"true"}}
	fail := &hcl.Probe{Kind: probe.Exec, Command: []string{"false"}}
	cfg := configOf(
		&hcl.Agent{Name: "alpha", Pidfile: "/nonexistent/alpha.pid", Probe: pass},
		&hcl.Agent{Name: "beta", Pidfile: "/nonexistent/beta.pid", Probe: fail},
		&hcl.Agent{Name: "gamma", Pidfile: "/nonexistent/gamma.pid"},
		&hcl.Agent{Name: "other-node", Node: "node-2", Pidfile: "/x"},
	)
	reg := prometheus.NewPedanticRegistry()
	n := startNode(t, Options{Config: cfg, NodeName: "node-1", Registerer: reg, Now: clock.Now, CheckInterval: time.Hour, DisableProbeLoop: true}, nil)
	ctx := context.Background()
	n.Probe(ctx, "alpha")
	n.Probe(ctx, "beta")
	if err := n.Heartbeat("alpha", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	clock.Add(3 * time.Second)

	want := `
# HELP medic_agent_heartbeat_age_seconds Time since the agent's last heartbeat; only while it is registered.
# TYPE medic_agent_heartbeat_age_seconds gauge
medic_agent_heartbeat_age_seconds{agent="alpha",node="node-1"} 3
# HELP medic_agent_heartbeat_timeout_seconds The agent's heartbeat timeout; only while it is registered.
# TYPE medic_agent_heartbeat_timeout_seconds gauge
medic_agent_heartbeat_timeout_seconds{agent="alpha",node="node-1"} 15
# HELP medic_agent_probe_success Whether the latest functional probe of the agent passed (an overdue heartbeat fails it).
# TYPE medic_agent_probe_success gauge
medic_agent_probe_success{agent="alpha",node="node-1"} 1
medic_agent_probe_success{agent="beta",node="node-1"} 0
# HELP medic_agent_restarts_total Restarts of the agent by medic (runbook or watchdog).
# TYPE medic_agent_restarts_total counter
medic_agent_restarts_total{agent="alpha",node="node-1"} 0
medic_agent_restarts_total{agent="beta",node="node-1"} 0
medic_agent_restarts_total{agent="gamma",node="node-1"} 0
# HELP medic_agent_up Whether the agent's process is running (checked by PID and process start time).
# TYPE medic_agent_up gauge
medic_agent_up{agent="alpha",node="node-1"} 0
medic_agent_up{agent="beta",node="node-1"} 0
medic_agent_up{agent="gamma",node="node-1"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"medic_agent_up", "medic_agent_probe_success", "medic_agent_restarts_total",
		"medic_agent_heartbeat_age_seconds", "medic_agent_heartbeat_timeout_seconds"); err != nil {
		t.Fatal(err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "medic_scrape_collector_success" {
			for _, m := range mf.GetMetric() {
				if m.GetGauge().GetValue() != 1 {
					t.Errorf("collector %v failed", m.GetLabel())
				}
			}
			if len(mf.GetMetric()) != len(collectors)+1 {
				t.Errorf("%d collector success series, want %d", len(mf.GetMetric()), len(collectors)+1)
			}
		}
	}
	// /metrics serves the same registry.
	code, body := call(t, "GET", n.URL+"/metrics", "")
	if code != 200 || !strings.Contains(body, `medic_agent_up{agent="gamma",node="node-1"} 0`) {
		t.Fatalf("/metrics = %d\n%s", code, body)
	}
}
