// Package simulate runs medic's own decision path — the bridge's webhook
// decoder and router (package bridge) and the remediation engine with its
// safety controls (package runbooks) — in a simulated world, in virtual
// time: `medic test` checks runbooks against *.test.hcl files, `medic
// backtest` replays Prometheus' ALERTS history.
//
// Only the engine's seams are simulated (runbooks.Agents, the Locker, the
// ControlStore, the clock, script execution, the escalation and silence
// HTTP client and the pool Switcher). Nothing here models what the engine
// decides: a change to the engine changes what tests and backtests see.
// No process is started and nothing touches the network or Redis.
package simulate
