package queue

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the dispatch metrics of docs/design.md §6 plus the gap and failure
// counters. Create one per process with NewMetrics and share it between the
// Publisher, Consumer and Coordinator of that process; a nil *Metrics is
// valid and records nothing.
type Metrics struct {
	published          *prometheus.CounterVec
	delivered          *prometheus.CounterVec
	switchovers        *prometheus.CounterVec
	switchoverDuration *prometheus.HistogramVec
	gaps               *prometheus.CounterVec
	failures           *prometheus.CounterVec
	reg                prometheus.Registerer
}

// NewMetrics registers the dispatch metrics with reg (nil: not registered,
// still counted).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_dispatch_published_total",
			Help: "Configs accepted into a pool (idempotent retries not counted).",
		}, []string{"pool"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_dispatch_delivered_total",
			Help: "Configs a device confirmed with 2xx and this agent acknowledged.",
		}, []string{"pool"}),
		switchovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_dispatch_switchovers_total",
			Help: "Completed switchovers of a pool's active agent driven by this coordinator.",
		}, []string{"pool"}),
		switchoverDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medic_dispatch_switchover_duration_seconds",
			Help:    "Time from lock to unlock of completed switchovers.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"pool"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_dispatch_seq_gaps_total",
			Help: "Times an agent found a device's next config more than one past its ack and held the device.",
		}, []string{"pool"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_dispatch_delivery_failures_total",
			Help: "Failed delivery attempts (transport error or non-2xx); each is retried.",
		}, []string{"pool"}),
		reg: reg,
	}
	if reg != nil {
		reg.MustRegister(m.published, m.delivered, m.switchovers, m.switchoverDuration, m.gaps, m.failures)
	}
	return m
}

func (m *Metrics) incPublished(pool string) {
	if m != nil {
		m.published.WithLabelValues(pool).Inc()
	}
}

func (m *Metrics) incDelivered(pool string) {
	if m != nil {
		m.delivered.WithLabelValues(pool).Inc()
	}
}

func (m *Metrics) incGap(pool string) {
	if m != nil {
		m.gaps.WithLabelValues(pool).Inc()
	}
}

func (m *Metrics) incFailure(pool string) {
	if m != nil {
		m.failures.WithLabelValues(pool).Inc()
	}
}

func (m *Metrics) observeSwitchover(pool string, seconds float64) {
	if m != nil {
		m.switchovers.WithLabelValues(pool).Inc()
		m.switchoverDuration.WithLabelValues(pool).Observe(seconds)
	}
}

// initPool makes the pool's series exist at zero, so rate() and absent()
// work before the first event.
func (m *Metrics) initPool(pool string) {
	if m == nil {
		return
	}
	m.published.WithLabelValues(pool)
	m.delivered.WithLabelValues(pool)
	m.switchovers.WithLabelValues(pool)
	m.gaps.WithLabelValues(pool)
	m.failures.WithLabelValues(pool)
}
