package exporter

import "github.com/prometheus/client_golang/prometheus"

var (
	hbAgeDesc = agentDesc("heartbeat_age_seconds",
		"Time since the agent's last heartbeat; only while it is registered.")
	hbTimeoutDesc = agentDesc("heartbeat_timeout_seconds",
		"The agent's heartbeat timeout; only while it is registered.")
)

type heartbeatCollector struct{ s *scrape }

func (c heartbeatCollector) Update(ch chan<- prometheus.Metric) error {
	for _, v := range c.s.views {
		if v.HB.registered {
			c.s.gauge(ch, hbAgeDesc, v.HBAge.Seconds(), v.Name)
			c.s.gauge(ch, hbTimeoutDesc, v.HB.timeout.Seconds(), v.Name)
		}
	}
	return nil
}
