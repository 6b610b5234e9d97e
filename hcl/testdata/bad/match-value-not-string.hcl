runbook "r" {
  match {
    alertname = ["A", "B"]
  }
}
