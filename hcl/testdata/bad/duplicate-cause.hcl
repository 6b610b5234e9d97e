runbook "r" {
  match { alertname = "A" }

  cause "mem" {
    when = usage.memory > 0.8
  }

  cause "mem" {
    when = usage.memory > 0.9
  }
}
