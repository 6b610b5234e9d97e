package exporter

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector builds one family of metrics at scrape time.
type collector interface {
	Update(ch chan<- prometheus.Metric) error
}

// scrape is what every collector of one scrape sees: the agents' views,
// sampled once.
type scrape struct {
	node  string
	views []agentView
}

var agentLabels = []string{"agent", "node"}

// gauge sends one agent's gauge.
func (s *scrape) gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, agent string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, agent, s.node)
}

func agentDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("medic_agent_"+name, help, agentLabels, nil)
}

var (
	scrapeSuccessDesc = prometheus.NewDesc("medic_scrape_collector_success",
		"Whether a collector of medic node succeeded.", []string{"collector"}, nil)
	scrapeDurationDesc = prometheus.NewDesc("medic_scrape_collector_duration_seconds",
		"How long a collector of medic node took.", []string{"collector"}, nil)
)

// collectors are run in this order; "sample" (reading /proc for every
// agent) runs before them and is reported like one.
var collectors = []struct {
	name  string
	new   func(*scrape) collector
	descs []*prometheus.Desc
}{
	{"up", func(s *scrape) collector { return upCollector{s} }, []*prometheus.Desc{upDesc}},
	{"probe", func(s *scrape) collector { return probeCollector{s} }, []*prometheus.Desc{probeSuccessDesc, probeDurationDesc}},
	{"process", func(s *scrape) collector { return processCollector{s} }, []*prometheus.Desc{cpuDesc, rssDesc, memRatioDesc}},
	{"disk", func(s *scrape) collector { return diskCollector{s} }, []*prometheus.Desc{diskDesc}},
	{"heartbeat", func(s *scrape) collector { return heartbeatCollector{s} }, []*prometheus.Desc{hbAgeDesc, hbTimeoutDesc}},
	{"restarts", func(s *scrape) collector { return restartsCollector{s} }, []*prometheus.Desc{restartsDesc}},
}

// nodeCollector is the one prometheus.Collector a Node registers.
type nodeCollector struct{ n *Node }

func newNodeCollector(n *Node) *nodeCollector { return &nodeCollector{n: n} }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- scrapeSuccessDesc
	ch <- scrapeDurationDesc
	for _, col := range collectors {
		for _, d := range col.descs {
			ch <- d
		}
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	s := &scrape{node: c.n.opts.NodeName, views: c.n.views()}
	report(ch, "sample", start, nil)
	for _, col := range collectors {
		start := time.Now()
		err := col.new(s).Update(ch)
		if err != nil {
			c.n.log.Warn("collector failed", "collector", col.name, "err", err)
		}
		report(ch, col.name, start, err)
	}
}

func report(ch chan<- prometheus.Metric, name string, start time.Time, err error) {
	ok := 1.0
	if err != nil {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(scrapeDurationDesc, prometheus.GaugeValue, time.Since(start).Seconds(), name)
	ch <- prometheus.MustNewConstMetric(scrapeSuccessDesc, prometheus.GaugeValue, ok, name)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
