package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
	"github.com/medicops/medic/runbooks"
)

// world is the simulated estate of one run: the engine's Agents, its
// script execution, its HTTP client (escalation webhooks, Alertmanager
// silences) and its Switcher all answer from it. Each run starts from its
// own world: the state of the agent when its alert arrives.
type world struct {
	sim  *Sim
	spec hcl.TestWorld
	// per agent: restarted says a restart succeeded in this run.
	agents map[string]*agentState
}

type agentState struct {
	alive     bool
	restarted bool
	probes    int
}

var (
	_ runbooks.Agents   = (*simAgents)(nil)
	_ runbooks.Switcher = (*simAgents)(nil)
)

// simAgents forwards to the current world.
type simAgents struct{ sim *Sim }

func (a *simAgents) state(agent string) *agentState {
	w := a.sim.cur
	st := w.agents[agent]
	if st == nil {
		st = &agentState{alive: w.spec.Alive}
		w.agents[agent] = st
	}
	return st
}

// Alive implements runbooks.Agents.
func (a *simAgents) Alive(_ context.Context, agent string) (bool, string, error) {
	st := a.state(agent)
	if st.alive {
		return true, "simulated: alive", nil
	}
	return false, "simulated: not running", nil
}

// Probe implements runbooks.Agents: the world's probe results in turn,
// the last repeating; without them the probe fails until a restart.
func (a *simAgents) Probe(_ context.Context, agent string) (bool, string, error) {
	st := a.state(agent)
	spec := a.sim.cur.spec
	var pass bool
	if spec.Probe == nil {
		pass = st.restarted
	} else {
		pass = spec.Probe[min(st.probes, len(spec.Probe)-1)]
	}
	st.probes++
	if pass {
		return true, "simulated: probe passes", nil
	}
	return false, "simulated: probe fails", nil
}

// Usage implements runbooks.Agents.
func (a *simAgents) Usage(context.Context, string) (hcl.Usage, error) {
	return a.sim.cur.spec.Usage, nil
}

// Restart implements runbooks.Agents: it takes the world's
// restart_duration of virtual time.
func (a *simAgents) Restart(_ context.Context, agent string) error {
	st := a.state(agent)
	a.sim.clock.Advance(a.sim.cur.spec.RestartDuration)
	if a.sim.cur.spec.RestartFails {
		return errors.New("simulated: the restart failed")
	}
	st.alive, st.restarted = true, true
	return nil
}

// Switchover implements runbooks.Switcher.
func (a *simAgents) Switchover(_ context.Context, pool, from string) (string, error) {
	if a.sim.cur.spec.SwitchoverFails {
		return "", fmt.Errorf("simulated: switchover of pool %s failed", pool)
	}
	return fmt.Sprintf("simulated: pool %s switched away from %s", pool, from), nil
}

// exec is the engine's Options.Exec: exit codes by step name, nothing run.
func (s *Sim) exec(_ context.Context, step string, cmd execx.Cmd) execx.Result {
	code := 0
	if c, ok := s.cur.spec.Scripts[step]; ok {
		code = c
	} else if step == "escalate" && s.cur.spec.EscalationFails {
		code = 1
	}
	res := execx.Result{ExitCode: code, Output: "simulated: " + hcl.ArgvText(cmd.Argv)}
	if code != 0 {
		res.Err = fmt.Errorf("exit status %d", code)
	}
	return res
}

// transport answers the engine's HTTP requests: Alertmanager's silence
// API and escalation webhooks.
type transport struct{ sim *Sim }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	code, body := http.StatusOK, "ok"
	switch {
	case req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/api/v2/silences"):
		body = `{"silenceID":"simulated"}`
	case strings.Contains(req.URL.Path, "/api/v2/silence/"):
	case t.sim.cur.spec.EscalationFails:
		code, body = http.StatusInternalServerError, "simulated: the escalation failed"
	}
	return &http.Response{
		StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}, nil
}
