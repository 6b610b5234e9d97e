package runbooks

import (
	"context"
	"log/slog"
	"time"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/internal/execx"
)

// ControlStore is the shared state behind the safety controls (pauses,
// approvals, the restart budget, the circuit breaker, the concurrency
// slots): *controls.Store in Redis in production, a virtual-time store in
// `medic test` and `medic backtest` (package simulate). It is a seam, not
// a second implementation of the engine: the engine decides, the store
// only remembers.
type ControlStore interface {
	Paused(ctx context.Context, runbook string, now time.Time) (*controls.Pause, error)
	TakeRestart(ctx context.Context, node, agent string, limit int, window time.Duration, b controls.Backoff, now time.Time, runID string) (wait time.Duration, exhausted string, err error)
	Circuit(ctx context.Context, node, agent string, maxRuns int, window time.Duration, now time.Time, runID string) (open bool, until time.Time, err error)
	CircuitPeek(ctx context.Context, node, agent string, maxRuns int, window time.Duration, now time.Time) (open bool, until time.Time, err error)
	Ask(ctx context.Context, runID string, deadline, now time.Time) (time.Time, bool, error)
	WaitDecision(ctx context.Context, runID string, poll time.Duration) (*controls.Decision, error)
	Withdraw(ctx context.Context, runID string) (*controls.Decision, error)
	Acquire(ctx context.Context, l controls.Limit, runID string, now func() time.Time, log *slog.Logger) (*controls.Slot, error)
}

var _ ControlStore = (*controls.Store)(nil)

// ExecFunc runs one script of a run: step is the step's name
// ("repair:memory", "escalate"), cmd what to run. The default is
// execx.Run; a simulation answers by step name and starts nothing.
type ExecFunc func(ctx context.Context, step string, cmd execx.Cmd) execx.Result

func runExec(ctx context.Context, _ string, cmd execx.Cmd) execx.Result { return execx.Run(ctx, cmd) }

// noControls turns a nil *controls.Store held in the interface into a nil
// interface, so that callers passing a possibly nil store keep meaning
// "no shared controls".
func noControls(c ControlStore) ControlStore {
	if s, ok := c.(*controls.Store); ok && s == nil {
		return nil
	}
	return c
}
