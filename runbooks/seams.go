package runbooks

import (
	"context"
	"time"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
)

// Agents is what the engine needs from the node that runs an agent. The
// node's supervisor (package exporter) implements it.
type Agents interface {
	// Alive reports whether the agent's process exists, checked by PID and
	// process start time so a reused PID never counts as alive.
	Alive(ctx context.Context, agent string) (alive bool, detail string, err error)
	// Probe runs the agent's functional probe now. An agent with a
	// heartbeat that is registered and overdue fails its probe.
	Probe(ctx context.Context, agent string) (ok bool, detail string, err error)
	// Usage samples the agent's usage ratios now.
	Usage(ctx context.Context, agent string) (hcl.Usage, error)
	// Restart stops the agent if it runs (whole process group) and starts it.
	Restart(ctx context.Context, agent string) error
}

// Locker gives one run per agent at a time across processes (the lease
// medic:lease:NODE:AGENT in Redis, or an in-process map for `medic run`).
type Locker interface {
	// TryLock takes the lease for key for ttl. ok is false when another
	// holder has it. release gives it back.
	TryLock(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error)
}

// Switcher switches a pool away from an agent (package queue implements it).
type Switcher interface {
	Switchover(ctx context.Context, pool, fromAgent string) (detail string, err error)
}

// Request asks the engine to run one runbook for one agent on this node.
// The engine (run.go) serves it with
//
//	func (e *Engine) Run(ctx context.Context, req Request) *RunRecord
//
// and callers that only need that (the bridge's job consumer, the node's
// watchdog) depend on the Runner interface.
type Request struct {
	// ID is the run id; empty lets the engine make one.
	ID string `json:"id,omitempty"`
	// Runbook names the runbook; empty means the first that matches Alert.
	Runbook string `json:"runbook,omitempty"`
	// Agent names the target; empty means the runbook's agent expression.
	Agent   string      `json:"agent,omitempty"`
	Alert   alert.Alert `json:"alert"`
	Trigger string      `json:"trigger"`
	// Progress, when set, receives a copy of the record whenever the run
	// reaches a state others must see before it ends (pending_approval);
	// the job consumer stores it in the run store. It is called in the
	// run's goroutine and should return quickly.
	Progress func(*RunRecord) `json:"-"`
	// Park, when set, is called when the run starts waiting (for an
	// approval or a concurrency slot) and returns what ends the wait:
	// unpark blocks until the run may work again. The job consumer frees
	// the run's execution slot (--node.jobs) in between: waiting is not
	// working. unpark returns at once when the run's context ends.
	Park func() (unpark func()) `json:"-"`
	// RetriesHeld says the caller runs the request again when it ends
	// skipped by a live holder (RunRecord.HeldBy): such an end is not
	// counted in medic_remediations_total, the final one is.
	RetriesHeld bool `json:"-"`
	// Expired, when set, says the job reached its node past its deadline:
	// the run acts on nothing, ends "expired" with this reason and
	// escalates, so that a late job still reaches a human.
	Expired string `json:"-"`
	// Redelivered is set by the job consumer for a job whose node stopped
	// before it ended: the record says so (RunRecord.Redelivered).
	Redelivered bool `json:"-"`
}

// Runner runs a request to completion and always returns a record.
type Runner interface {
	Run(ctx context.Context, req Request) *RunRecord
}
