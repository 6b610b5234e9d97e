package runbooks

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's. Labels are bounded: runbook names come from the
// config and outcomes are the closed set in record.go.
type metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
	if reg != nil {
		m.runs = register(reg, m.runs)
		m.duration = register(reg, m.duration)
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same descriptor (`medic serve` runs bridge and node in one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *metrics) observe(rec *RunRecord) {
	m.runs.WithLabelValues(rec.Runbook, rec.Outcome).Inc()
	m.duration.WithLabelValues(rec.Runbook).Observe(rec.Duration)
}
