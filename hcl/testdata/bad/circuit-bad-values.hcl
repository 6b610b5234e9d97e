runbook "r" {
  match { alertname = "A" }

  circuit {
    max_runs = 2.5
  }
}
