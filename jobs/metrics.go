package jobs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/internal/promx"
	"github.com/medicops/medic/runbooks"
)

// Metrics are the node's job consumer's (docs/design.md §6).
type Metrics struct {
	jobsConsumed *prometheus.CounterVec
	jobWait      prometheus.Histogram
	remediations *prometheus.CounterVec
	duration     *prometheus.HistogramVec
}

// NewMetrics registers the consumer's metrics with reg; nil registers
// nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		jobsConsumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_jobs_consumed_total",
			Help: "Jobs a node took from its stream, by what became of them (run, expired, cancelled, done).",
		}, []string{"result"}),
		jobWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "medic_job_wait_seconds",
			Help:    "Time from enqueue by the bridge until the node started the job.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 120, 600},
		}),
		// Same options as the engine's (runbooks/metrics.go): one collector.
		remediations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_remediations_total",
			Help: "Remediation runs by runbook and outcome.",
		}, []string{"runbook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medic_remediation_duration_seconds",
			Help:    "How long remediation runs took, from request to outcome.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
		}, []string{"runbook"}),
	}
	if reg != nil {
		m.remediations = promx.Register(reg, m.remediations)
		m.duration = promx.Register(reg, m.duration)
		m.jobsConsumed = promx.Register(reg, m.jobsConsumed)
		m.jobWait = promx.Register(reg, m.jobWait)
	}
	return m
}

// observe counts a record the consumer made itself (the engine counts its
// own runs).
func (m *Metrics) observe(rec *runbooks.RunRecord) {
	m.remediations.WithLabelValues(rec.Runbook, rec.Outcome).Inc()
	m.duration.WithLabelValues(rec.Runbook).Observe(rec.Duration)
}
