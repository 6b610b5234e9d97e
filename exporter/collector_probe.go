package exporter

import "github.com/prometheus/client_golang/prometheus"

var (
	probeSuccessDesc = agentDesc("probe_success",
		"Whether the latest functional probe of the agent passed (an overdue heartbeat fails it).")
	probeDurationDesc = agentDesc("probe_duration_seconds",
		"How long the latest functional probe of the agent took.")
)

type probeCollector struct{ s *scrape }

// Update reports the latest result; probes run on their own interval and
// on demand, never at scrape time.
func (c probeCollector) Update(ch chan<- prometheus.Metric) error {
	for _, v := range c.s.views {
		if !v.Probe.Done {
			continue
		}
		c.s.gauge(ch, probeSuccessDesc, boolFloat(v.Probe.OK), v.Name)
		c.s.gauge(ch, probeDurationDesc, v.Probe.Duration.Seconds(), v.Name)
	}
	return nil
}
