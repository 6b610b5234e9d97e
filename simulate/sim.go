package simulate

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/route"
	"github.com/medicops/medic/runbooks"
)

// Outcomes a simulation adds to the engine's, for alerts that never reach
// it: the bridge ignores an alert no runbook matches and runs nothing for
// a resolved one.
const (
	OutcomeIgnored  = "ignored"
	OutcomeResolved = "resolved"
)

// Outcomes is every outcome an expect block may name.
func Outcomes() []string {
	return append([]string{OutcomeIgnored, OutcomeResolved}, runbooks.Outcomes...)
}

// Sim is one simulated estate: a configuration, virtual time, the shared
// control state every node sees (one virtual Redis), and one engine per
// node, built on demand exactly as `medic node` builds its own.
type Sim struct {
	cfg     *hcl.Config
	clock   *Clock
	store   *Store
	locker  *Locker
	agents  *simAgents
	client  *http.Client
	engines map[string]*runbooks.Engine
	cur     *world
	// pending: approval runs stop at once as "pending" instead of being
	// decided (backtest).
	pending bool
}

// New returns a simulation of cfg whose virtual time starts at start.
func New(cfg *hcl.Config, start time.Time) *Sim {
	s := &Sim{cfg: cfg, clock: NewClock(start), engines: map[string]*runbooks.Engine{}}
	s.cur = &world{sim: s, spec: hcl.DefaultTestWorld(), agents: map[string]*agentState{}}
	s.store = newStore(s.clock, func() policy {
		p := policy{paused: s.cur.spec.Paused, approval: s.cur.spec.Approval}
		if s.pending {
			p.approval = "pending"
		}
		return p
	})
	s.locker = newLocker(s.clock)
	s.agents = &simAgents{sim: s}
	s.client = &http.Client{Transport: transport{sim: s}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return s
}

// Clock is the simulation's virtual clock.
func (s *Sim) Clock() *Clock { return s.clock }

func (s *Sim) engine(node string) *runbooks.Engine {
	e := s.engines[node]
	if e == nil {
		cfg := s.cfg
		e = runbooks.New(runbooks.Options{
			Config: func() *hcl.Config { return cfg }, Node: node,
			Agents: s.agents, Locker: s.locker, Switcher: s.agents, Controls: s.store,
			Exec: s.exec, HTTPClient: s.client, Now: s.clock.Now, Sleep: s.clock.Sleep,
		})
		s.engines[node] = e
	}
	return e
}

// Result is what came of one alert.
type Result struct {
	Alert   alert.Alert
	Route   route.Decision
	Outcome string
	// Record is the engine's run record; nil when the alert never reached
	// the engine (ignored, resolved, unroutable).
	Record    *runbooks.RunRecord
	Escalated bool
	// Steps are the record's step names, "verify N/M" as "verify" and
	// repeats of one step in a row once.
	Steps  []string
	Causes []string
	// Start and End bound the run in virtual time.
	Start, End time.Time
}

// Deliver sends one alert at virtual time at through the bridge's decoder
// and router and, when it routes, through the engine of its node, in the
// world w. Runs must be delivered in the order of their start.
func (s *Sim) Deliver(ctx context.Context, a alert.Alert, at time.Time, w hcl.TestWorld) (Result, error) {
	s.clock.Set(at)
	if a.StartsAt.IsZero() {
		a.StartsAt = at
	}
	decoded, err := decode(a)
	if err != nil {
		return Result{}, err
	}
	a = decoded
	res := Result{Alert: a, Start: at, End: at}
	r := route.Decide(s.cfg, a)
	res.Route = r
	if r.Runbook == nil {
		res.Outcome = OutcomeIgnored
		return res, nil
	}
	switch {
	case a.Status == "resolved":
		res.Outcome = OutcomeResolved
		return res, nil
	case r.Node == "":
		// The bridge records it and escalates it (bridge.unroutable).
		res.Outcome, res.Escalated = runbooks.OutcomeUnroutable, true
		return res, nil
	}
	s.cur = &world{sim: s, spec: w, agents: map[string]*agentState{}}
	rec := s.engine(r.Node).Run(ctx, runbooks.Request{
		ID: runbooks.NewRunID(at), Runbook: r.Runbook.Name, Agent: r.Agent, Alert: a, Trigger: runbooks.TriggerAlert,
	})
	res.Record, res.Outcome, res.Causes = rec, rec.Outcome, rec.Causes
	res.End = rec.Finished
	for _, st := range rec.Steps {
		name := st.Name
		if strings.HasPrefix(name, "verify ") {
			name = "verify"
		}
		if name == "escalate" {
			res.Escalated = true
		}
		if n := len(res.Steps); n > 0 && res.Steps[n-1] == name {
			continue
		}
		res.Steps = append(res.Steps, name)
	}
	if rec.Outcome == runbooks.OutcomeEscalated {
		res.Escalated = true
	}
	return res, nil
}

// decode passes the alert through the bridge's webhook decoder, as
// Alertmanager would deliver it (version 4), so that the router sees what
// it sees in production, fingerprint included.
func decode(a alert.Alert) (alert.Alert, error) {
	type wire struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations,omitempty"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
		Fingerprint string            `json:"fingerprint,omitempty"`
	}
	status := a.Status
	if status == "" {
		status = "firing"
	}
	labels := a.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	body, err := json.Marshal(struct {
		Version string `json:"version"`
		Status  string `json:"status"`
		Alerts  []wire `json:"alerts"`
	}{"4", status, []wire{{Status: status, Labels: labels, Annotations: a.Annotations, StartsAt: a.StartsAt, Fingerprint: a.Fingerprint}}})
	if err != nil {
		return alert.Alert{}, err
	}
	alerts, err := alert.Decode(body)
	if err != nil {
		return alert.Alert{}, err
	}
	return alerts[0], nil
}
