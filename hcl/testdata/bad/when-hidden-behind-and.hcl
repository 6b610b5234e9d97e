runbook "r" {
  match { alertname = "A" }

  cause "cpu" {
    when = usage.cpu > agent.thresholds.cpu && usage.host.cpus > 0.9
  }
}
