runbook "r" {
  match { alertname = "MedicPoolAgentDown" }

  switchover {}

  cause "mem" {
    when = usage.memory > 0.8
  }
}
