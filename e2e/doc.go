// Package e2e runs medic the way users run it: `medic node` scraped by a
// real Prometheus with medic's alert rules, real Alertmanagers posting to
// `medic bridge`, Redis with AOF, real agent processes and a device server,
// and checks that agents come back, runs are recorded, alerts resolve and
// dashboards have data. Nothing here is mocked and nothing is skipped: a
// missing binary fails with "run make deps".
package e2e
