runbook "r" {
  match { alertname = "A" }

  cause "any-critical" {
    when = length([for k, v in alert.labels : k if v == "critical" && lables.x == ""]) > 0
  }
}
