runbook "r" {
  match { alertname = "A" }

  escalate {
    webhook = ""
  }
}
