runbook "r" {
  match { alertname = "A" }

  verify {
    interval = "0s"
  }
}
