runbook "r" {
  match { alertname = "A" }

  cause "noisy" {
    when = lenght(alert.labels) > 10
  }
}
