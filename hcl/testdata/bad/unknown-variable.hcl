runbook "r" {
  match { alertname = "A" }

  cause "mem" {
    when = usge.memory > 0.8
  }
}
