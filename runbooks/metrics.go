package runbooks

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/hcl"
)

// Metrics are the remediation metrics, and this package is their one
// owner: medic_remediations_total{runbook,outcome},
// medic_remediation_duration_seconds{runbook} and
// medic_escalations_total{runbook,result}. A process builds them once
// (NewMetrics) and hands them to every engine, to the bridge and to the
// node's job consumer, each of which counts the runs it records itself.
// Labels are bounded: runbook names come from the config and outcomes are
// the closed set in record.go.
type Metrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	escalations *prometheus.CounterVec
}

// NewMetrics registers the remediation metrics with reg; nil registers
// nothing (the metrics still count, for a caller that reads them).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_remediations_total",
			Help: "Remediation runs by runbook and outcome.",
		}, []string{"runbook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medic_remediation_duration_seconds",
			Help:    "How long remediation runs took, from request to outcome.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
		}, []string{"runbook"}),
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_escalations_total",
			Help: "Escalation deliveries by runbook and result: delivered, failed (retries ran out), retried (an attempt failed and is tried again).",
		}, []string{"runbook", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.duration, m.escalations)
	}
	return m
}

// Observe counts one recorded run of its runbook.
func (m *Metrics) Observe(rec *RunRecord) { m.observe(rec.Runbook, rec) }

// Escalations is medic_escalations_total, for an Escalator's Metrics.
func (m *Metrics) Escalations() *prometheus.CounterVec { return m.escalations }

// registerPoolInfo exports the pools of node's agents on reg: one engine
// per node does; a second engine on the same registry would only repeat
// the same series.
func registerPoolInfo(reg prometheus.Registerer, cfg func() *hcl.Config, node string) {
	if reg == nil || cfg == nil || node == "" {
		return
	}
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(&poolInfo{cfg: cfg, node: node}); err != nil && !errors.As(err, &are) {
		panic(err)
	}
}

var poolInfoDesc = prometheus.NewDesc("medic_agent_pool_info",
	"1 for every config-dispatch pool an agent of this node belongs to (the join that gives MedicPoolAgentDown its pool label).",
	[]string{"agent", "node", "pool"}, nil)

// poolInfo exports pool membership from the configuration in force, built
// at scrape time so that a reload shows at the next scrape.
type poolInfo struct {
	cfg  func() *hcl.Config
	node string
}

func (p *poolInfo) Describe(ch chan<- *prometheus.Desc) { ch <- poolInfoDesc }

func (p *poolInfo) Collect(ch chan<- prometheus.Metric) {
	cfg := p.cfg()
	if cfg == nil {
		return
	}
	local := map[string]bool{}
	for _, a := range cfg.AgentsForNode(p.node) {
		local[a.Name] = true
	}
	seen := map[[2]string]bool{}
	for _, pool := range cfg.Pools {
		for _, agent := range pool.Agents {
			key := [2]string{agent, pool.Name}
			if !local[agent] || seen[key] {
				continue
			}
			seen[key] = true
			ch <- prometheus.MustNewConstMetric(poolInfoDesc, prometheus.GaugeValue, 1, agent, p.node, pool.Name)
		}
	}
}

func (m *Metrics) observe(runbook string, rec *RunRecord) {
	m.runs.WithLabelValues(runbook, rec.Outcome).Inc()
	m.duration.WithLabelValues(runbook).Observe(rec.Duration)
}
