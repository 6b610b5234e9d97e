runbook "r" {
  match {
    labels {
      alertname = "A"
    }
  }
}
