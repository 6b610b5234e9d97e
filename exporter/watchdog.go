package exporter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/runbooks"
)

// Alert names of watchdog runs; the same names as the Prometheus rules, so
// a runbook written for the alert also serves the watchdog.
const (
	alertDown      = "MedicAgentDown"
	alertHeartbeat = "MedicAgentHeartbeatMissed"
)

// watchdogState keeps one watchdog run per agent at a time (the engine's
// lease also does, across processes) and remembers an event that came in
// during a run.
type watchdogState struct {
	running    bool
	pending    string
	pendingWhy string
	last       time.Time
	runs       uint64
}

// trigger starts the agent's runbook because its child exited or its
// heartbeat went overdue, unless the agent's watchdog is off.
func (n *Node) trigger(a *agent, alertname, why string) {
	if !a.def().Watchdog {
		return
	}
	a.mu.Lock()
	ctx := a.ctx
	if ctx == nil || ctx.Err() != nil {
		a.mu.Unlock()
		return
	}
	if a.wd.running {
		a.wd.pending, a.wd.pendingWhy = alertname, why
		a.mu.Unlock()
		return
	}
	a.wd.running = true
	a.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.watchdog(ctx, a, alertname, why)
	}()
}

func (n *Node) watchdog(ctx context.Context, a *agent, alertname, why string) {
	for {
		a.mu.Lock()
		wait := n.opts.WatchdogDebounce - time.Since(a.wd.last)
		a.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			a.mu.Lock()
			a.wd.running = false
			a.mu.Unlock()
			return
		}
		a.mu.Lock()
		a.wd.last = time.Now()
		a.wd.runs++
		a.mu.Unlock()

		rec := n.runWatchdog(ctx, a, alertname, why)
		attrs := []any{"agent", a.name, "alertname", alertname, "outcome", rec.Outcome, "run", rec.ID}
		if rec.Error != "" {
			attrs = append(attrs, "error", rec.Error)
		}
		n.log.Info("watchdog run", attrs...)
		if n.opts.OnRecord != nil {
			n.opts.OnRecord(rec)
		}

		a.mu.Lock()
		next, nextWhy := a.wd.pending, a.wd.pendingWhy
		a.wd.pending, a.wd.pendingWhy = "", ""
		a.mu.Unlock()
		// An event that came in during the run may be stale by now (the run
		// restarted the agent): only a still-broken agent gets another run.
		if next != "" && ctx.Err() == nil && n.stillBroken(a, next) {
			alertname, why = next, nextWhy
			continue
		}
		a.mu.Lock()
		a.wd.running = false
		a.mu.Unlock()
		return
	}
}

func (n *Node) stillBroken(a *agent, alertname string) bool {
	if alertname == alertHeartbeat {
		over, _ := a.heartbeatState().overdue(n.now())
		return over
	}
	alive, _, _ := a.alive()
	return !alive
}

func (n *Node) runWatchdog(ctx context.Context, a *agent, alertname, why string) *runbooks.RunRecord {
	now := n.now()
	req := runbooks.Request{
		Trigger: runbooks.TriggerWatchdog,
		Agent:   a.name,
		Alert: alert.Alert{
			Status:   "firing",
			StartsAt: now,
			Labels: map[string]string{
				"alertname": alertname,
				"agent":     a.name,
				"node":      n.opts.NodeName,
			},
			Annotations: map[string]string{"summary": why},
		},
	}
	if r := n.runner(); r != nil {
		return r.Run(ctx, req)
	}
	return n.restartAlone(ctx, req)
}

// restartAlone is the watchdog without an engine: restart, record it.
func (n *Node) restartAlone(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
	start := n.now()
	rec := &runbooks.RunRecord{
		ID:       runID(start),
		Runbook:  "watchdog",
		Agent:    req.Agent,
		Node:     n.opts.NodeName,
		Trigger:  req.Trigger,
		StartsAt: req.Alert.StartsAt,
		Labels:   req.Alert.Labels,
		Started:  start,
	}
	step := runbooks.Step{Name: "restart", Started: start}
	err := n.Restart(ctx, req.Agent)
	step.Duration = n.now().Sub(start).Seconds()
	if err != nil {
		step.Error = err.Error()
		rec.Outcome, rec.Error = runbooks.OutcomeFailed, err.Error()
	} else {
		step.OK, step.Detail = true, "restarted"
		rec.Outcome = runbooks.OutcomeRecovered
	}
	rec.Steps = append(rec.Steps, step)
	rec.Finished = n.now()
	rec.Duration = rec.Finished.Sub(start).Seconds()
	return rec
}

func runID(t time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return t.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b)
}
