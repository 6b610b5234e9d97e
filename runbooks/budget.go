package runbooks

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/hcl"
)

// budgets is the restart budget and backoff state of every agent of one
// engine, in memory: a node restarts only its own agents, so the state
// lives where the restarts happen and dies with the process (a restarted
// node starts with a fresh budget, which errs on the side of repairing).
type budgets struct {
	base, max, reset time.Duration

	mu     sync.Mutex
	agents map[string]*agentBudget
}

type agentBudget struct {
	restarts []time.Time // restarts in the longest window seen, oldest first
	streak   int         // restarts in the current crash-loop streak
	last     time.Time
}

func newBudgets(base, max, reset time.Duration) *budgets {
	return &budgets{base: base, max: max, reset: reset, agents: map[string]*agentBudget{}}
}

func (b *budgets) get(agent string) *agentBudget {
	a := b.agents[agent]
	if a == nil {
		a = &agentBudget{}
		b.agents[agent] = a
	}
	return a
}

// effectiveBudget is b with its defaults. restarts = 0 in HCL means
// "never restart, escalate"; the loader always sets the window, so only a
// hand-built zero Budget{} (no budget at all) gets the default count.
func effectiveBudget(b hcl.Budget) (restarts int, window time.Duration) {
	restarts, window = b.Restarts, b.Window
	if restarts < 0 || restarts == 0 && window == 0 {
		restarts = hcl.DefaultBudgetRestarts
	}
	if window <= 0 {
		window = hcl.DefaultBudgetWindow
	}
	return restarts, window
}

// reserve decides whether agent may restart now: exhausted is a reason
// when the budget is spent; otherwise wait is the backoff to sleep first.
func (b *budgets) reserve(agent string, budget hcl.Budget, now time.Time) (wait time.Duration, exhausted string) {
	limit, window := effectiveBudget(budget)
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.get(agent)
	n := 0
	for _, t := range a.restarts {
		if now.Sub(t) < window {
			n++
		}
	}
	if n >= limit {
		return 0, fmt.Sprintf("restart budget exhausted: %d in %s", n, controls.ShortDuration(window))
	}
	if b.base < 0 || a.last.IsZero() || now.Sub(a.last) >= b.reset {
		a.streak = 0
	}
	if a.streak > 0 {
		d := b.base << (a.streak - 1)
		if d > b.max || d <= 0 {
			d = b.max
		}
		wait = a.last.Add(d).Sub(now)
	}
	return max(wait, 0), ""
}

// take is reserve and, when granted, record at the end of the backoff:
// one step, like the shared budget's script.
func (b *budgets) take(agent string, budget hcl.Budget, now time.Time) (wait time.Duration, exhausted string) {
	wait, exhausted = b.reserve(agent, budget, now)
	if exhausted == "" {
		b.record(agent, now.Add(wait))
	}
	return wait, exhausted
}

// record counts a restart made at t.
func (b *budgets) record(agent string, t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.get(agent)
	a.streak++
	a.last = t
	// Keep a bounded history: the largest budget anyone configures is far
	// below this, and older entries fall out of every window.
	a.restarts = append(a.restarts, t)
	if len(a.restarts) > 1024 {
		a.restarts = a.restarts[len(a.restarts)-1024:]
	}
}

// takeRestart asks the restart budget for one restart: from the shared
// controls when there are some (one agent has one budget whichever engine
// restarts it), else, or while Redis is unreachable, from this process.
func (r *run) takeRestart() (wait time.Duration, exhausted string) {
	limit, window := effectiveBudget(r.rb.Budget)
	now := r.e.opts.Now()
	if c := r.e.opts.Controls; c != nil {
		ctx, cancel := context.WithTimeout(r.ctx, r.e.opts.ProbeTimeout)
		defer cancel()
		bo := controls.Backoff{Base: r.e.opts.BackoffBase, Max: r.e.opts.BackoffMax, Reset: r.e.opts.BackoffReset}
		wait, exhausted, err := c.TakeRestart(ctx, r.e.opts.Node, r.rec.Agent, limit, window, bo, now, r.rec.ID)
		if err == nil {
			return wait, exhausted
		}
		s := r.step("budget")
		r.done(s, false, "shared restart budget unavailable; counting in this process only", err)
		r.log.Warn("shared restart budget unavailable; counting in this process only", "err", err)
	}
	return r.e.budgets.take(r.rec.Agent, hcl.Budget{Restarts: limit, Window: window}, now)
}
