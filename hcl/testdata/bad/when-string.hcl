runbook "r" {
  match {
    alertname = "A"
  }

  cause "label" {
    when   = alert.labels.critical
    repair = ["/bin/true"]
  }

  cause "literal" {
    when   = "true"
    repair = ["/bin/true"]
  }
}
