runbook "r" {
  match { alertname = "A" }

  cause "mem" {
    when = usage.memory > agent.thresholds["ram"]
  }
}
