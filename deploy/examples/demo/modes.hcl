# The careful modes in the demo, on one more agent, demo-batch: no
# heartbeat and watchdog = false, so nothing but these two runbooks acts on
# it. Hang it (/hang: its probe fails), then:
#
# - alert DemoBatchShadow: runbook demo-shadow samples, diagnoses and
#   records what it would run — the restart — and runs nothing: "shadowed",
#   the same pid.
# - alert DemoBatchApprove: runbook demo-approve diagnoses and waits in
#   "pending_approval" until POST /api/v1/runs/{id}/approve (or /reject);
#   approved, it checks the agent again, restarts it and verifies:
#   "recovered", a new pid.

agent "demo-batch" {
  node     = "demo"
  command  = ["@MEDIC@", "demo-agent", "--name=demo-batch", "--listen=127.0.0.1:@PORT_BATCH@"]
  workdir  = "@DIR@/demo-batch"
  watchdog = false

  probe "http" {
    url      = "http://127.0.0.1:@PORT_BATCH@/healthz"
    timeout  = "1s"
    interval = "2s"
  }
}

runbook "demo-shadow" {
  match {
    alertname = "DemoBatchShadow"
  }
  mode = "shadow"

  verify {
    attempts = 5
    interval = "1s"
  }
}

runbook "demo-approve" {
  match {
    alertname = "DemoBatchApprove"
  }
  mode         = "approve"
  approval_ttl = "10m"

  verify {
    attempts = 5
    interval = "1s"
  }
}
