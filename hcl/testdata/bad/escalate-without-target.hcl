runbook "r" {
  match { alertname = "A" }

  escalate {
    timeout = "5s"
  }
}
