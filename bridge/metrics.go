package bridge

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/runbooks"
)

// Metrics are the bridge's (docs/design.md §6). The remediation metrics
// (medic_remediations_total, medic_remediation_duration_seconds,
// medic_escalations_total) are runbooks.Metrics, built once per process and
// passed in: the bridge counts the runs it records itself (unroutable,
// cancelled, expired) on the same collectors as the engine.
type Metrics struct {
	webhookRequests *prometheus.CounterVec
	alertsReceived  *prometheus.CounterVec
	deduplicated    prometheus.Counter
	unroutable      prometheus.Counter
	runs            *runbooks.Metrics
	// enqueueBatch is how many alerts each group-commit batch carried.
	enqueueBatch prometheus.Histogram

	// The webhook's counters, looked up once instead of per request:
	// WithLabelValues hashes its labels and takes a lock every time.
	firing, resolved prometheus.Counter
	codes            [len(webhookCodes)]atomic.Pointer[prometheus.Counter]
}

// webhookCodes are the codes the webhook answers with; their counters are
// created on first use, so that /metrics shows only codes that happened.
var webhookCodes = [...]int{202, 400, 401, 403, 413, 503}

// webhookRequest counts one webhook answer.
func (m *Metrics) webhookRequest(code int) {
	for i, c := range webhookCodes {
		if c != code {
			continue
		}
		if p := m.codes[i].Load(); p != nil {
			(*p).Inc()
			return
		}
		ctr := m.webhookRequests.WithLabelValues(strconv.Itoa(code))
		m.codes[i].Store(&ctr)
		ctr.Inc()
		return
	}
	m.webhookRequests.WithLabelValues(strconv.Itoa(code)).Inc()
}

// alertReceived counts one alert by its own status.
func (m *Metrics) alertReceived(status string) {
	switch status {
	case "firing":
		m.firing.Inc()
	case "resolved":
		m.resolved.Inc()
	default:
		m.alertsReceived.WithLabelValues(status).Inc()
	}
}

// NewMetrics registers the bridge's metrics with reg (nil registers
// nothing) and counts the runs the bridge records on runs, the process's
// remediation metrics (nil: unregistered ones).
func NewMetrics(reg prometheus.Registerer, runs *runbooks.Metrics) *Metrics {
	if runs == nil {
		runs = runbooks.NewMetrics(nil)
	}
	m := &Metrics{
		webhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_webhook_requests_total",
			Help: "Alertmanager webhook requests by HTTP status code.",
		}, []string{"code"}),
		alertsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_alerts_received_total",
			Help: "Alerts received by the webhook, by each alert's own status.",
		}, []string{"status"}),
		deduplicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_alerts_deduplicated_total",
			Help: "Firing alerts whose episode (fingerprint + startsAt) was already taken.",
		}),
		unroutable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_alerts_unroutable_total",
			Help: "Alerts that matched a runbook but could not be routed to a node.",
		}),
		runs: runs,
	}
	m.enqueueBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "medic_bridge_enqueue_batch_alerts",
		Help:    "Firing alerts per group-commit batch the bridge sent to Redis (one round trip, one fsync with appendfsync always).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	for _, s := range []string{"firing", "resolved"} {
		m.alertsReceived.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.webhookRequests, m.alertsReceived, m.deduplicated, m.unroutable, m.enqueueBatch)
	}
	m.firing = m.alertsReceived.WithLabelValues("firing")
	m.resolved = m.alertsReceived.WithLabelValues("resolved")
	return m
}

// observe counts a record the bridge or the consumer made itself (the
// engine counts its own runs).
func (m *Metrics) observe(rec *runbooks.RunRecord) { m.runs.Observe(rec) }
