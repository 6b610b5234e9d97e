// Package controls owns the operator controls and shared limits that must
// hold across every bridge and node talking to one Redis: pauses, approvals
// of runs waiting in "approve" mode, the per-agent restart budget and circuit
// breaker, and the fleet-wide concurrency slots of a runbook.
//
// Every check-and-act is one Lua script, so two processes can never both
// take the last slot or both decide one approval. Keys that a script touches
// together share a hash tag, so the scripts run on Redis Cluster too. With
// the default prefix "medic:" (P below; the names are in internal/keys):
//
//	P{ctl}:pause                     hash: runbook ("*" = all) → Pause (JSON)
//	P{ctl}:approvals                 zset: run id → approval deadline (unix ms)
//	P{ctl}:decision:ID               string: Decision (JSON), kept DecisionTTL
//	P{ctl}:asked:ID                  string: approval deadline (unix ms) of the run's first request, kept past it by DecisionTTL
//	P{agent:NODE/AGENT}:budget       zset: restarts, score = when (unix ms)
//	P{agent:NODE/AGENT}:backoff      hash: streak, last (unix ms) of the crash loop
//	P{agent:NODE/AGENT}:circuit      zset: runs counted by the circuit, score = when
//	P{rb:RUNBOOK}:conc:KEY           zset: run id → slot lease expiry (unix ms)
//	P{rb:RUNBOOK}:queue:KEY          zset: waiting run id → when it queued (FIFO)
//	P{rb:RUNBOOK}:qlease:KEY         zset: waiting run id → waiter lease expiry
//
// Times are the callers' clocks (unix ms), not Redis' TIME, so that tests
// can drive them; nodes are expected to run NTP like any cluster. A slot or
// a place in the queue is a lease: its holder renews it, and a crashed
// holder's entry is dropped by the next script that looks once its lease
// expired. Nobody frees a slot by hand.
//
// The API the bridge uses (Pause, Resume, Pauses, Paused, Decide, Pending,
// ResetAgent) is a contract with bridge/ and app/: extend it, do not
// change those signatures without a note here.
//
// controls sits beside the engine, not inside it: runbooks enforces these
// limits during a run and bridge lets operators set them, so both import
// controls, and controls imports neither (only Redis and Prometheus).
package controls
