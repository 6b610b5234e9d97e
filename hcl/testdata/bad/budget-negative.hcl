runbook "r" {
  match { alertname = "A" }

  budget {
    restarts = -1
  }
}
