runbook "r" {
  match { alertname = "A" }

  cause "mem" {
    when = usage.mem > agent.thresholds.memory
  }
}
