package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/runbooks"
)

// mttrTrials is how many kills each path is measured over. Every trial
// kills a different agent, so the engine's restart backoff (which grows
// with consecutive restarts of one agent) never inflates a measurement.
const mttrTrials = 11

func mttrAgent(path string, i int) string { return fmt.Sprintf("mttr-%s-%02d", path, i) }

func mttrHCL(s *stack) string {
	var b strings.Builder
	for i := range mttrTrials {
		b.WriteString(s.supervisedAgent(mttrAgent("alert", i), "  watchdog = false\n"))
		b.WriteString(s.supervisedAgent(mttrAgent("watchdog", i), "  watchdog = true\n"))
	}
	// One runbook for both paths: the watchdog runs the runbook that
	// matches its synthetic alert, or restart-alone when none does; both
	// verify at once after the restart and then every 100ms.
	b.WriteString(`runbook "mttr" {
  matchers = ["agent=~\"mttr-.+\""]
  verify {
    attempts = 50
    interval = "100ms"
  }
  budget {
    restarts = 10
    window   = "1h"
  }
}
`)
	return b.String()
}

// BenchmarkMTTR measures kill → verified healthy (the run record of the
// restart whose verify passed) through the alert path (node metrics →
// Prometheus at 1s scrape and evaluation → Alertmanager with group_wait 0
// → bridge → node) and through the node's own watchdog.
func BenchmarkMTTR(b *testing.B) {
	s := startStack(b, stackOptions{
		Alertmanagers: 1, Bridges: 1,
		Scenarios: []scenario{{name: "mttr", hcl: mttrHCL}},
	})
	for i := range mttrTrials {
		s.waitAgentUp(b, mttrAgent("alert", i), 30*time.Second)
		s.waitAgentUp(b, mttrAgent("watchdog", i), 30*time.Second)
	}
	b.ResetTimer()
	for range b.N {
		for _, path := range []struct {
			name, trigger string
			goal          time.Duration
		}{
			{"alert", runbooks.TriggerAlert, 4 * time.Second},
			{"watchdog", runbooks.TriggerWatchdog, time.Second},
		} {
			var d []time.Duration
			for i := range mttrTrials {
				agent := mttrAgent(path.name, i)
				// Align the kill to a random point of the scrape cycle.
				time.Sleep(time.Duration(137*i%1000) * time.Millisecond)
				killed := time.Now()
				s.kill(b, agent)
				rec := s.waitRun(b, agent, 30*time.Second, func(r runbooks.RunRecord) bool {
					return r.Trigger == path.trigger && r.Outcome == runbooks.OutcomeRecovered && r.Finished.After(killed)
				})
				d = append(d, rec.Finished.Sub(killed))
			}
			slices.Sort(d)
			med := d[len(d)/2]
			goal := "met"
			if med > path.goal {
				goal = "MISSED"
			}
			b.ReportMetric(d[0].Seconds(), path.name+"-min-s")
			b.ReportMetric(med.Seconds(), path.name+"-median-s")
			b.ReportMetric(d[len(d)-1].Seconds(), path.name+"-max-s")
			fmt.Printf("MTTR %-8s kill → verified healthy over %d trials: min %s  median %s  max %s  (goal: median ≤ %s, %s)\n",
				path.name, len(d), d[0].Round(time.Millisecond), med.Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), path.goal, goal)
		}
	}
}
