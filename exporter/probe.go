package exporter

import (
	"context"
	"fmt"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/probe"
)

// probeResult is the latest result of an agent's functional probe.
type probeResult struct {
	Done     bool // a probe has run
	OK       bool
	Detail   string
	Duration time.Duration
	At       time.Time
}

// runProbe runs one probe of p with its kind's prober (package probe),
// bounded by p's timeout. It never returns an error: failure is a result.
func runProbe(ctx context.Context, p *hcl.Probe, env map[string]string) (bool, string) {
	k, ok := probe.Lookup(p.Kind)
	if !ok {
		return false, fmt.Sprintf("unknown probe kind %q", p.Kind)
	}
	c := *p
	if c.Timeout <= 0 {
		c.Timeout = hcl.DefaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	return k.Prober.Probe(ctx, &c, env)
}

// probeNow is the on-demand probe: a registered, overdue heartbeat fails
// it (the process is hung); otherwise the configured probe runs. The
// result becomes the exported latest result.
func (a *agent) probeNow(ctx context.Context) probeResult {
	start := time.Now()
	res := probeResult{Done: true, At: start}
	if over, detail := a.heartbeatState().overdue(a.n.now()); over {
		res.OK, res.Detail = false, detail
	} else if p := a.def().Probe; p != nil {
		env := map[string]string{"MEDIC_AGENT": a.name, "MEDIC_NODE": a.n.opts.NodeName}
		res.OK, res.Detail = runProbe(ctx, p, env)
	} else {
		// Liveness is all there is to check.
		ok, detail, _ := a.alive()
		res.OK, res.Detail = ok, "no probe configured; "+detail
	}
	res.Duration = time.Since(start)
	a.mu.Lock()
	a.probe = res
	a.mu.Unlock()
	return res
}

func (a *agent) probeState() probeResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.probe
}

// probeLoop probes every interval (default 10 s) until ctx ends.
func (a *agent) probeLoop(ctx context.Context) {
	// The first probe comes soon after start, so the exported result is
	// not missing for a whole interval.
	wait := time.Second
	for {
		interval := hcl.DefaultProbeInterval
		if p := a.def().Probe; p != nil && p.Interval > 0 {
			interval = p.Interval
		}
		wait = min(wait, interval)
		t := time.NewTimer(wait)
		wait = interval
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if a.def().Probe != nil {
			a.probeNow(ctx)
		}
	}
}
