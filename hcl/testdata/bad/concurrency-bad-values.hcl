runbook "r" {
  match { alertname = "A" }

  concurrency {
    max       = 0
    max_ratio = 1.5
    key       = alrt.labels.cluster
    wait      = "soon"
    queue     = -1
  }
}

runbook "s" {
  match { alertname = "B" }

  concurrency {
    key = alert.labels.cluster
  }
}
