// Package runbooks owns the remediation engine: the recovery lifecycle of
// docs/design.md §1.1 (liveness → probe → diagnosis → repair → restart → verify →
// escalate), the run records it produces, the per-agent lease, the restart
// budget, and the ready-made runbooks under library/.
//
// By concern: engine.go (Options, Engine), run.go (one run: resolve the
// runbook, record its steps), lifecycle.go (liveness, probe, repair,
// restart, verify, switchover), diagnose.go, safety.go (the gate: pauses,
// approvals, circuit, concurrency, as package controls keeps them),
// lease.go (the per-agent lease), budget.go (the restart budget),
// escalate.go and silence.go (what the engine tells humans), and seams.go
// (the interfaces package simulate replaces).
package runbooks
