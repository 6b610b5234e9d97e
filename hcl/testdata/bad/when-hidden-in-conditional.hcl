runbook "r" {
  match { alertname = "A" }

  cause "mem" {
    when = alert.status == "firing" ? usage.memory > "lots" : false
  }
}
