# Tests of heartbeat-restart.hcl: `medic test runbooks/library`.

agent "ingest" {
  node    = "worker-01"
  pidfile = "/run/ingest.pid"
  start   = ["systemctl", "start", "ingest"]

  heartbeat {
    timeout = "15s"
  }
}

test "a hung process is restarted alone" {
  alert {
    labels = { alertname = "MedicAgentHeartbeatMissed", agent = "ingest", node = "worker-01" }
  }
  world {
    alive = true # alive, but its heartbeat is overdue: the probe fails
  }
  expect {
    outcome   = "recovered"
    causes    = []
    steps     = ["liveness", "probe", "diagnose", "restart", "verify"]
    escalated = false
  }
}

test "a dead process is restarted" {
  alert {
    labels = { alertname = "MedicAgentHeartbeatMissed", agent = "ingest", node = "worker-01" }
  }
  world {
    alive = false
  }
  expect {
    outcome = "recovered"
    steps   = ["liveness", "restart", "verify"]
  }
}

test "it is still hung after the restart: humans are told" {
  alert {
    labels = { alertname = "MedicAgentHeartbeatMissed", agent = "ingest", node = "worker-01" }
  }
  world {
    probe = ["fail"]
  }
  expect {
    outcome   = "escalated"
    steps     = ["liveness", "probe", "diagnose", "restart", "verify", "escalate"]
    escalated = true
  }
}

test "five restarts an hour, then escalate instead" {
  alert {
    labels = { alertname = "MedicAgentHeartbeatMissed", agent = "ingest", node = "worker-01" }
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
