runbook "r" {
  match { alertname = "A" }
  agent = usage.memory > 0.5 ? "a" : "b"
}
