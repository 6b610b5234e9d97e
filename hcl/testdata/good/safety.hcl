agent "eu1-a" {
  command = ["/bin/a"]
  node    = "n1"
  labels  = { cluster = "eu1" }
}

agent "eu1-b" {
  command = ["/bin/b"]
  node    = "n2"
  labels  = { cluster = "eu1" }
}

agent "us1-a" {
  command = ["/bin/c"]
  node    = "n3"
  labels  = { cluster = "us1" }
}

runbook "careful" {
  match { alertname = "AgentDown" }
  mode         = "approve"
  approval_ttl = "10m"
  redact       = ["(?i)password=\\S+", "Bearer [A-Za-z0-9._-]+"]

  concurrency {
    max       = 3
    max_ratio = 0.5
    key       = alert.labels.cluster
    wait      = "2m"
    queue     = 10
  }

  circuit {
    max_runs = 3
    window   = "1h"
  }

  silence {
    alertmanager = "http://127.0.0.1:9093"
    duration     = "10m"
  }
}

runbook "watch" {
  match { alertname = "AgentSlow" }
  mode = "shadow"
}
