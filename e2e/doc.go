// Package e2e runs medic the way users run it: `medic node` scraped by a
// real Prometheus with medic's alert rules, real Alertmanagers posting to
// `medic bridge`, Redis with AOF, real agent processes and a device server,
// and checks that agents come back, runs are recorded, alerts resolve and
// dashboards have data. Nothing here is mocked and nothing is skipped: a
// missing binary fails with "run make deps".
//
// TestE2E runs the remediation and dispatch scenarios on one stack;
// TestSafety shows the runbook safety controls (modes, approvals, pause,
// concurrency, circuit, shared budget, silence, redaction, authenticated
// reads) on two bridges and two nodes sharing one Redis.
package e2e
