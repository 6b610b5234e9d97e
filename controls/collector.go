package controls

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	pausedDesc = prometheus.NewDesc("medic_paused",
		`Whether new runs of a runbook are paused (1) or not (0), by its own pause or the global one; runbook="*" is the global pause.`,
		[]string{"runbook"}, nil)
	controlsUpDesc = prometheus.NewDesc("medic_controls_scrape_success",
		"Whether the controls collector could read the pause state from Redis.", nil, nil)
	controlsDurationDesc = prometheus.NewDesc("medic_controls_scrape_duration_seconds",
		"How long the controls collector took to read Redis.", nil, nil)
)

// PausedCollector exports medic_paused for the configured runbooks plus
// runbook="*" for the global pause. Pauses of runbooks that are not
// configured are not exported: the label stays bounded by the config.
type PausedCollector struct {
	store    *Store
	runbooks func() []string
	timeout  time.Duration
	log      *slog.Logger
}

var _ prometheus.Collector = (*PausedCollector)(nil)

// NewPausedCollector returns a collector reading s at scrape time;
// runbooks returns the configured runbook names (it follows reloads).
func NewPausedCollector(s *Store, runbooks func() []string, log *slog.Logger) *PausedCollector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PausedCollector{store: s, runbooks: runbooks, timeout: 2 * time.Second, log: log}
}

// Describe implements prometheus.Collector.
func (c *PausedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pausedDesc
	ch <- controlsUpDesc
	ch <- controlsDurationDesc
}

// Collect implements prometheus.Collector.
func (c *PausedCollector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	err := c.Update(ch)
	ok := 1.0
	if err != nil {
		ok = 0
		c.log.Warn("controls collector failed", "err", err)
	}
	ch <- prometheus.MustNewConstMetric(controlsUpDesc, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(controlsDurationDesc, prometheus.GaugeValue, time.Since(start).Seconds())
}

// Update sends medic_paused; on a Redis error it sends nothing of it (an
// unknown state is not "not paused").
func (c *PausedCollector) Update(ch chan<- prometheus.Metric) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	pauses, err := c.store.Pauses(ctx, time.Now())
	if err != nil {
		return err
	}
	global := false
	own := map[string]bool{}
	for _, p := range pauses {
		if p.Runbook == "" {
			global = true
		} else {
			own[p.Runbook] = true
		}
	}
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, b2f(global), AllRunbooks)
	var names []string
	if c.runbooks != nil {
		names = c.runbooks()
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] || n == AllRunbooks {
			continue
		}
		seen[n] = true
		ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, b2f(global || own[n]), n)
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
