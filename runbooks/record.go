package runbooks

import (
	"time"

	"github.com/medicops/medic/hcl"
)

// Outcomes of a run. They are the `outcome` label of
// medic_remediations_total, so the set is closed.
const (
	OutcomeHealthy    = "healthy"    // alive and probe passes: nothing touched
	OutcomeRecovered  = "recovered"  // verify passed after restart/repair
	OutcomeEscalated  = "escalated"  // still broken, or budget exhausted; humans told
	OutcomeSwitched   = "switched"   // a switchover runbook moved the pool
	OutcomeUnroutable = "unroutable" // no node could be found for the alert
	OutcomeExpired    = "expired"    // job reached the node past its deadline, or no approval came within approval_ttl
	OutcomeCancelled  = "cancelled"  // resolved before the job started
	OutcomeSkipped    = "skipped"    // a live run of another episode holds the agent's lease (retried)
	OutcomeFailed     = "failed"     // medic itself failed (bad config, internal error)

	OutcomeLimited     = "limited"      // the runbook's fleet-wide concurrency limit held past its wait or queue; escalated
	OutcomeCircuitOpen = "circuit_open" // too many runs for the agent within the circuit's window; escalated without acting
	OutcomeShadowed    = "shadowed"     // shadow mode: diagnosed, recorded what it would run, executed nothing
	OutcomePaused      = "paused"       // an operator paused the runbook (or all of them): nothing ran
	OutcomeRejected    = "rejected"     // approve mode: an operator rejected the run; nothing acted

	// OutcomePendingApproval is not a final outcome: it is the state of
	// the intermediate record stored while an approve-mode run waits for a
	// decision, and never a label of medic_remediations_total.
	OutcomePendingApproval = "pending_approval"
)

// Outcomes is the closed set of final outcomes, the values of the
// `outcome` label.
var Outcomes = []string{
	OutcomeHealthy, OutcomeRecovered, OutcomeEscalated, OutcomeSwitched, OutcomeUnroutable,
	OutcomeExpired, OutcomeCancelled, OutcomeSkipped, OutcomeFailed,
	OutcomeLimited, OutcomeCircuitOpen, OutcomeShadowed, OutcomePaused, OutcomeRejected,
}

// Values of RunRecord.Redelivered.
const (
	RedeliveredStartedAgain = "started_again"
	RedeliveredResumed      = "resumed"
)

// Triggers say what started a run.
const (
	TriggerAlert    = "alert"
	TriggerWatchdog = "watchdog"
	TriggerManual   = "manual"
)

// MaxStepOutput caps the output kept per step.
const MaxStepOutput = 64 << 10

// Step is one action of a run.
type Step struct {
	Name     string    `json:"name"` // liveness, probe, diagnose, repair:CAUSE, restart, verify, escalate, switchover
	Started  time.Time `json:"started"`
	Duration float64   `json:"duration_seconds"`
	// ExitCode is set for steps that ran a process.
	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	// Output is the step's combined output, capped at MaxStepOutput.
	Output string `json:"output,omitempty"`
	// Detail is a short human summary ("pid 4242 alive", "memory 0.91 > 0.80").
	Detail string `json:"detail,omitempty"`
	OK     bool   `json:"ok"`
}

// RunRecord is what one run did and why. It is stored by the bridge and
// printed by `medic run`.
type RunRecord struct {
	ID          string            `json:"id"`
	Runbook     string            `json:"runbook"`
	Agent       string            `json:"agent"`
	Node        string            `json:"node"`
	Trigger     string            `json:"trigger"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	StartsAt    time.Time         `json:"starts_at,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
	Causes      []string          `json:"causes,omitempty"`
	Usage       *hcl.Usage        `json:"usage,omitempty"`
	Steps       []Step            `json:"steps"`
	Outcome     string            `json:"outcome"`
	// Reason says in a sentence why the run ended with its outcome
	// ("restart budget exhausted: 3 in 1h", "another run holds the lease …").
	Reason string `json:"reason,omitempty"`
	// HeldBy is, for a run skipped because a live run of another episode
	// acts on the agent, that run's id; the job consumer tries the
	// episode again once it is done.
	HeldBy string `json:"held_by,omitempty"`
	// Redelivered says what became of a run whose node stopped before it
	// ended and which was delivered again: "started_again" (from the
	// beginning) or "resumed" (its wait for an approval went on).
	Redelivered string    `json:"redelivered,omitempty"`
	Error       string    `json:"error,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Duration    float64   `json:"duration_seconds"`

	// Escalation is the delivery of the run's escalation, when it was
	// escalated to a target: delivered, retrying or failed (escalate.go).
	Escalation string `json:"escalation,omitempty"`
}
