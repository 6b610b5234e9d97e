package exporter

import "github.com/prometheus/client_golang/prometheus"

var (
	cpuDesc = agentDesc("cpu_seconds_total",
		"User and system CPU time of the agent's process tree and process group.")
	rssDesc = agentDesc("resident_memory_bytes",
		"Resident memory of the agent's process tree and process group.")
	memRatioDesc = agentDesc("memory_ratio",
		"Resident memory of the agent over its cgroup memory limit, or over MemTotal when none is set.")
)

type processCollector struct{ s *scrape }

func (c processCollector) Update(ch chan<- prometheus.Metric) error {
	for _, v := range c.s.views {
		if !v.HasProc {
			continue
		}
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, v.CPUSeconds, v.Name, c.s.node)
		ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(v.RSS), v.Name, c.s.node)
		ch <- prometheus.MustNewConstMetric(memRatioDesc, prometheus.GaugeValue, v.MemRatio, v.Name, c.s.node)
	}
	return nil
}
