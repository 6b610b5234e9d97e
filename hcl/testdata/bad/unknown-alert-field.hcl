runbook "r" {
  match { alertname = "A" }

  cause "prod" {
    when = alert.label.env == "prod"
  }
}
