# A guarded process whose heartbeat is older than its timeout is hung: no
# diagnosis helps, so the runbook has no causes and restarts it alone, then
# verifies and escalates like any recovery.
runbook "heartbeat-restart" {
  match {
    alertname = "MedicAgentHeartbeatMissed"
  }

  verify {
    attempts = 3
    interval = "2s"
  }

  escalate {
    webhook = "https://oncall.example/hooks/medic"
  }

  budget {
    restarts = 5
    window   = "1h"
  }
}
