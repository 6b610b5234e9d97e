# Tests of the demo estate (`medic test`): what each alert the demo
# suggests does to its agents, in a simulated world. The estate's files
# are templates (medic demo fills in the @…@ placeholders), so test them
# rendered: inside a running demo, `medic test CONFIG_DIR` (the directory
# medic demo prints); from a checkout, `make runbook-tests`.

test "demo-web hung: the heartbeat runbook restarts it" {
  alert {
    labels = { alertname = "MedicAgentHeartbeatMissed", agent = "demo-web", node = "demo" }
  }
  expect {
    outcome = "recovered"
    runbook = "heartbeat-restart"
    steps   = ["liveness", "probe", "diagnose", "restart", "verify"]
  }
}

test "demo-worker died: agent-recovery restarts it" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "demo-worker", node = "demo" }
  }
  world {
    alive = false
  }
  expect {
    outcome = "recovered"
    runbook = "agent-recovery"
    steps   = ["liveness", "restart", "verify"]
  }
}

test "demo-worker leaking memory: repaired, then restarted" {
  alert {
    labels = { alertname = "MedicAgentMemoryHigh", agent = "demo-worker", node = "demo" }
  }
  world {
    usage = { memory = 0.91 }
  }
  expect {
    outcome = "recovered"
    causes  = ["memory"]
    steps   = ["liveness", "probe", "diagnose", "repair:memory", "restart", "verify"]
  }
}

test "DemoBatchShadow: demo-batch is diagnosed, nothing runs" {
  alert {
    labels = { alertname = "DemoBatchShadow", agent = "demo-batch", node = "demo" }
  }
  expect {
    outcome   = "shadowed"
    steps     = ["liveness", "probe", "diagnose", "restart", "verify"]
    escalated = false
  }
}

test "DemoBatchApprove, approved: demo-batch is restarted" {
  alert {
    labels = { alertname = "DemoBatchApprove", agent = "demo-batch", node = "demo" }
  }
  world {
    approval = "approve"
  }
  expect {
    outcome = "recovered"
    steps   = ["liveness", "probe", "diagnose", "approval", "liveness", "probe", "restart", "verify"]
  }
}

test "DemoBatchApprove, rejected: nothing acts" {
  alert {
    labels = { alertname = "DemoBatchApprove", agent = "demo-batch", node = "demo" }
  }
  world {
    approval = "reject"
  }
  expect {
    outcome = "rejected"
  }
}

test "DemoBatchApprove, nobody decides in 10m: expired" {
  alert {
    labels = { alertname = "DemoBatchApprove", agent = "demo-batch", node = "demo" }
  }
  world {
    approval = "none"
  }
  expect {
    outcome = "expired"
  }
}

test "the active config agent is down: the pool switches over" {
  alert {
    labels = { alertname = "MedicPoolAgentDown", agent = "demo-cfg-1", node = "demo", pool = "demo-switches" }
  }
  expect {
    outcome = "switched"
    runbook = "pool-switchover"
  }
}

test "demo-web crash-looping: the fourth restart in an hour escalates" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "demo-web", node = "demo" }
  }
  world {
    alive = false
  }
  sequence {
    step {
      expect { outcome = "recovered" }
    }
    step {
      after = "5m"
      expect { outcome = "recovered" }
    }
    step {
      after = "5m"
      expect { outcome = "recovered" }
    }
    step {
      after = "5m"
      expect {
        outcome   = "escalated"
        steps     = ["liveness", "budget", "escalate"]
        escalated = true
      }
    }
  }
}
