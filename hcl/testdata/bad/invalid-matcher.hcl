runbook "r" {
  matchers = [
    "severity=\"critical\"",
    "alertname=~\"(\"",
  ]
}
