package exporter

import (
	"testing"
	"time"
)

// BenchmarkScanProcs is one scan of every process's stat, what a scrape
// does once for all agents.
func BenchmarkScanProcs(b *testing.B) {
	for b.Loop() {
		t, err := scanProcs(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(t.byPID)), "procs")
	}
}
