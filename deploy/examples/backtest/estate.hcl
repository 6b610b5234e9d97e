# The estate of the README's `medic backtest` example: a runbook with a
# circuit and one with a concurrency limit, four agents on four nodes.
agent "a1" {
  node    = "n1"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}
agent "a2" {
  node    = "n2"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}
agent "a3" {
  node    = "n3"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}
agent "a4" {
  node    = "n4"
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}

runbook "guarded" {
  match {
    alertname = "AgentFlapping"
  }
  circuit {
    max_runs = 2
    window   = "1d"
  }
  budget {
    restarts = 100
    window   = "1h"
  }
}

runbook "serial" {
  match {
    alertname = "AgentStuck"
  }
  concurrency {
    max  = 1
    wait = "5m"
  }
}
