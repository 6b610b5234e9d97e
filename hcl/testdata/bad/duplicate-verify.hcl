runbook "r" {
  match { alertname = "A" }

  verify {
    attempts = 3
  }

  verify {
    attempts = 5
  }
}
