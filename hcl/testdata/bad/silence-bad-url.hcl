runbook "r" {
  match { alertname = "A" }

  silence {
    alertmanager = "127.0.0.1:9093"
    duration     = "-5m"
  }
}
