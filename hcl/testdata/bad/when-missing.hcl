runbook "r" {
  match { alertname = "A" }

  cause "mem" {
    repair = ["/opt/medic/repair/memory.sh"]
  }
}
