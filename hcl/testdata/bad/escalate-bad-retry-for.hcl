runbook "r" {
  match { alertname = "A" }

  escalate {
    webhook   = "https://oncall.example/hooks/medic"
    retry_for = "-1m"
  }
}
