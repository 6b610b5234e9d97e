runbook "r" {
  match { alertname = "A" }
  cause "cpu" { when = usage.cpu > agent.thresholds.cpu   repair = ["/opt/medic/repair/cpu.sh"] }
}
