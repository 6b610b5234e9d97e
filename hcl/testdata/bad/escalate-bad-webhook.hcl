runbook "r" {
  match { alertname = "A" }

  escalate {
    webhook = "oncall.example/hooks/medic"
  }
}
