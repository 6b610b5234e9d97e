# An estate for the safety controls in virtual time: three agents of one
# cluster, one runbook per control.

agent "web-1" {
  node    = "n1"
  pidfile = "/run/web.pid"
  start   = ["systemctl", "start", "web"]
  labels  = { cluster = "eu" }
  probe "http" {
    url = "http://127.0.0.1:8080/healthz"
  }
}

agent "web-2" {
  node    = "n2"
  pidfile = "/run/web.pid"
  start   = ["systemctl", "start", "web"]
  labels  = { cluster = "eu" }
  probe "http" {
    url = "http://127.0.0.1:8080/healthz"
  }
}

agent "web-3" {
  node    = "n3"
  pidfile = "/run/web.pid"
  start   = ["systemctl", "start", "web"]
  labels  = { cluster = "eu" }
  probe "http" {
    url = "http://127.0.0.1:8080/healthz"
  }
}

runbook "guarded" {
  match {
    alertname = "Guarded"
  }
  circuit {
    max_runs = 2
    window   = "1h"
  }
  budget {
    restarts = 10
    window   = "1h"
  }
}

runbook "one-at-a-time" {
  match {
    alertname = "Serial"
  }
  concurrency {
    max   = 1
    wait  = "5m"
    queue = 1
  }
}

runbook "careful" {
  match {
    alertname = "Careful"
  }
  mode = "shadow"
  cause "memory" {
    when   = usage.memory > agent.thresholds.memory
    repair = ["/opt/repair/memory.sh"]
  }
}

runbook "asks" {
  match {
    alertname = "Asks"
  }
  mode         = "approve"
  approval_ttl = "10m"
}

runbook "quiet" {
  match {
    alertname = "Quiet"
  }
  silence {
    alertmanager = "http://alertmanager.example:9093"
  }
  escalate {
    command = ["/opt/page.sh"]
  }
}
