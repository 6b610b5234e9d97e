package exporter

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
)

// maxProbeBody bounds how much of an http probe's response is read (and
// matched against expect_body).
const maxProbeBody = 64 << 10

// probeResult is the latest result of an agent's functional probe.
type probeResult struct {
	Done     bool // a probe has run
	OK       bool
	Detail   string
	Duration time.Duration
	At       time.Time
}

// probeClient never follows a redirect off the configured URL and keeps no
// idle connections to agents (which come and go).
var probeClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{}).DialContext,
	},
}

// runProbe runs one probe of p. It never returns an error: failure is a
// result.
func runProbe(ctx context.Context, p *hcl.Probe, env map[string]string) (bool, string) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = hcl.DefaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch p.Kind {
	case hcl.ProbeHTTP:
		return probeHTTP(ctx, p)
	case hcl.ProbeTCP:
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.Address)
		if err != nil {
			return false, fmt.Sprintf("tcp %s: %v", p.Address, err)
		}
		conn.Close()
		return true, fmt.Sprintf("tcp %s: connected", p.Address)
	case hcl.ProbeExec:
		res := execx.Run(ctx, execx.Cmd{Argv: p.Command, Env: env, Timeout: timeout, MaxOutput: 4 << 10})
		if !res.OK() {
			return false, fmt.Sprintf("exec %s: %v: %s", p.Command[0], res.Err, truncate(res.Output, 256))
		}
		return true, fmt.Sprintf("exec %s: exit 0", p.Command[0])
	default:
		return false, fmt.Sprintf("unknown probe kind %q", p.Kind)
	}
}

func probeHTTP(ctx context.Context, p *hcl.Probe) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return false, fmt.Sprintf("http %s: %v", p.URL, err)
	}
	req.Header.Set("User-Agent", "medic-probe")
	resp, err := probeClient.Do(req)
	if err != nil {
		return false, fmt.Sprintf("http %s: %v", p.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		return false, fmt.Sprintf("http %s: reading body: %v", p.URL, err)
	}
	if p.ExpectStatus != 0 {
		if resp.StatusCode != p.ExpectStatus {
			return false, fmt.Sprintf("http %s: status %d, want %d", p.URL, resp.StatusCode, p.ExpectStatus)
		}
	} else if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, fmt.Sprintf("http %s: status %d", p.URL, resp.StatusCode)
	}
	if p.ExpectBody != nil && !p.ExpectBody.Match(body) {
		return false, fmt.Sprintf("http %s: body does not match /%s/", p.URL, p.ExpectBody)
	}
	return true, fmt.Sprintf("http %s: status %d", p.URL, resp.StatusCode)
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
