runbook "r" {
  match { alertname = "A" }

  verify {
    attempts = 2.5
  }
}
