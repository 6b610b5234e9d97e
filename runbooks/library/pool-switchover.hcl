# When the active agent of a config-dispatch pool is down, switch the pool to
# a healthy agent: its undelivered messages move over in order and nothing is
# lost (docs/design.md §1.3).
runbook "pool-switchover" {
  match {
    alertname = "MedicPoolAgentDown"
  }

  switchover {
    pool = alert.labels.pool
  }

  escalate {
    webhook = "https://oncall.example/hooks/medic"
  }
}
