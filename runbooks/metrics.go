package runbooks

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/promx"
)

// metrics are the engine's. Labels are bounded: runbook names come from the
// config and outcomes are the closed set in record.go.
type metrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	escalations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, cfg func() *hcl.Config, node string) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_remediations_total",
			Help: "Remediation runs by runbook and outcome.",
		}, []string{"runbook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medic_remediation_duration_seconds",
			Help:    "How long remediation runs took, from request to outcome.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
		}, []string{"runbook"}),
	}
	m.escalations = NewEscalationsCounter(reg)
	if reg != nil {
		m.runs = promx.Register(reg, m.runs)
		m.duration = promx.Register(reg, m.duration)
		if cfg != nil && node != "" {
			// One engine per node exports its pools; a second engine on the
			// same registry would only repeat the same series.
			var are prometheus.AlreadyRegisteredError
			if err := reg.Register(&poolInfo{cfg: cfg, node: node}); err != nil && !errors.As(err, &are) {
				panic(err)
			}
		}
	}
	return m
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

func (m *metrics) observe(runbook string, rec *RunRecord) {
	m.runs.WithLabelValues(runbook, rec.Outcome).Inc()
	m.duration.WithLabelValues(runbook).Observe(rec.Duration)
}
