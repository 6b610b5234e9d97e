runbook "r" {
  match { alertname = "A" }
  mode         = "approve"
  approval_ttl = "15"
}
