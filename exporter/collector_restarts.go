package exporter

import "github.com/prometheus/client_golang/prometheus"

var restartsDesc = agentDesc("restarts_total",
	"Restarts of the agent by medic (runbook or watchdog).")

type restartsCollector struct{ s *scrape }

func (c restartsCollector) Update(ch chan<- prometheus.Metric) error {
	for _, v := range c.s.views {
		ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(v.Restarts), v.Name, c.s.node)
	}
	return nil
}
