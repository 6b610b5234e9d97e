package exporter

import (
	"errors"
	"fmt"
	"time"
)

// heartbeat is the Consul-TTL-style registration of one agent: registered
// with a timeout, beaten while the agent really serves, dropped on a clean
// exit. Registered and older than its timeout means hung.
type heartbeat struct {
	registered bool
	timeout    time.Duration
	last       time.Time
	via        string // "http", "sd_notify" or "config"
	// episode is set once the current overdue period has been handed to the
	// watchdog, so one missed heartbeat starts one run.
	episode bool
}

// errNoTimeout: a registration needs a timeout from the request or from the
// agent's heartbeat block.
var errNoTimeout = errors.New("no heartbeat timeout: send {\"timeout\":\"15s\"} or declare heartbeat { timeout = ... } for the agent")

// resetHeartbeatLocked is called whenever medic (re)starts the agent: an
// agent with a heartbeat block is expected to beat within its timeout from
// now on; any other registration ends with the old process.
func (a *agent) resetHeartbeatLocked(now time.Time) {
	// A new process: a cached view of the old one is stale (gen).
	a.gen++
	if def := a.defn; def.Heartbeat != nil && def.Heartbeat.Timeout > 0 {
		a.hb = heartbeat{registered: true, timeout: def.Heartbeat.Timeout, last: now, via: "config"}
		return
	}
	a.hb = heartbeat{}
}

func (a *agent) beat(timeout time.Duration, via string) error {
	if timeout < 0 {
		return fmt.Errorf("negative heartbeat timeout %s", timeout)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if timeout == 0 {
		switch {
		case a.hb.registered && a.hb.timeout > 0:
			timeout = a.hb.timeout
		case a.defn.Heartbeat != nil && a.defn.Heartbeat.Timeout > 0:
			timeout = a.defn.Heartbeat.Timeout
		default:
			return errNoTimeout
		}
	}
	if !a.hb.registered {
		a.gen++
	}
	a.hb = heartbeat{registered: true, timeout: timeout, last: a.n.now(), via: via}
	return nil
}

func (a *agent) unregister(via string) {
	a.mu.Lock()
	a.hb = heartbeat{via: via}
	a.gen++
	a.mu.Unlock()
}

// heartbeatState returns the registration as of now.
func (a *agent) heartbeatState() heartbeat {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hb
}

// overdue reports whether the agent is registered and its last beat is
// older than its timeout.
func (h heartbeat) overdue(now time.Time) (bool, string) {
	if !h.registered || h.timeout <= 0 {
		return false, ""
	}
	age := now.Sub(h.last)
	if age <= h.timeout {
		return false, ""
	}
	return true, fmt.Sprintf("heartbeat overdue: last beat (%s) %s ago, timeout %s",
		h.via, age.Round(time.Millisecond), h.timeout)
}

// overdueEpisode reports a heartbeat that has newly gone overdue (once per
// overdue period; a beat or a restart starts a new period).
func (a *agent) overdueEpisode(now time.Time) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	over, detail := a.hb.overdue(now)
	if !over || a.hb.episode {
		return "", false
	}
	a.hb.episode = true
	return detail, true
}
