agent "ops-agent" {
  command = ["/bin/ops-agent"]
}

runbook "r" {
  match { alertname = "A" }
  agent = "ops-agnet"
}
