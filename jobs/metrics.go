package jobs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/runbooks"
)

// Metrics are the node's job consumer's (docs/design.md §6). The runs the
// consumer records itself (expired, cancelled) are counted on runs, the
// process's remediation metrics, which runbooks owns.
type Metrics struct {
	jobsConsumed *prometheus.CounterVec
	jobWait      prometheus.Histogram
	runs         *runbooks.Metrics
}

// NewMetrics registers the consumer's metrics with reg (nil registers
// nothing) and counts the runs it records on runs (nil: unregistered
// ones).
func NewMetrics(reg prometheus.Registerer, runs *runbooks.Metrics) *Metrics {
	if runs == nil {
		runs = runbooks.NewMetrics(nil)
	}
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
		runs: runs,
	}
	if reg != nil {
		reg.MustRegister(m.jobsConsumed, m.jobWait)
	}
	return m
}

// observe counts a record the consumer made itself (the engine counts its
// own runs).
func (m *Metrics) observe(rec *runbooks.RunRecord) { m.runs.Observe(rec) }
