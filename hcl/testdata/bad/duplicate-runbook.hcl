runbook "r" {
  match { alertname = "A" }
}

runbook "r" {
  match { alertname = "B" }
}
