package exporter

import "github.com/prometheus/client_golang/prometheus"

var diskDesc = agentDesc("disk_used_ratio",
	"Used ratio, as df computes it, of the filesystem holding the agent's working directory.")

type diskCollector struct{ s *scrape }

func (c diskCollector) Update(ch chan<- prometheus.Metric) error {
	for _, v := range c.s.views {
		if !v.HasDisk {
			continue
		}
		ch <- prometheus.MustNewConstMetric(diskDesc, prometheus.GaugeValue, v.DiskRatio, v.Name, c.s.node)
	}
	return nil
}
