agent "a" {
  command = ["/bin/a"]
}

agent "b" {
  pidfile = "/run/b.pid"
  start   = ["/usr/sbin/service", "b", "start"]
}

runbook "r" {
  match { alertname = "A" }

  cause "mem" {
    when = usage.memory > agent.thresholds.memory
  }
}

pool "p" {
  agents     = ["a"]
  device_url = "http://${device}.example/api"
}
