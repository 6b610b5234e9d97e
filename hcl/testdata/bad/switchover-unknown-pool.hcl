runbook "r" {
  match { alertname = "MedicPoolAgentDown" }

  switchover {
    pool = "swiches"
  }
}

agent "cfg-1" {
  command = ["/bin/cfg"]
}

pool "switches" {
  agents     = ["cfg-1"]
  device_url = "http://${device}.example/api"
}
