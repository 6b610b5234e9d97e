package exporter

import "github.com/prometheus/client_golang/prometheus"

var upDesc = agentDesc("up",
	"Whether the agent's process is running (checked by PID and process start time).")

type upCollector struct{ s *scrape }

func (c upCollector) Update(ch chan<- prometheus.Metric) error {
	for _, v := range c.s.views {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, boolFloat(v.Up), v.Name, c.s.node)
	}
	return nil
}
