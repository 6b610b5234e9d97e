# Tests of agent-recovery.hcl: `medic test runbooks/library`. The world is
# simulated and time is virtual: nothing is started, nothing is touched.
# The library ships no agents, so this file declares the one it tests
# (agents in a test file join the configuration under test).

agent "ops-agent" {
  node    = "web-01"
  pidfile = "/run/ops-agent.pid"
  start   = ["systemctl", "start", "ops-agent"]

  probe "http" {
    url = "http://127.0.0.1:8081/healthz"
  }
}

test "a leak is repaired, then restarted" {
  alert {
    labels = { alertname = "MedicAgentProbeFailing", agent = "ops-agent", node = "web-01" }
  }
  world {
    alive   = true
    probe   = ["fail", "pass"]
    usage   = { memory = 0.93, cpu = 0.10, disk = 0.40 }
    scripts = { "repair:memory" = 0 }
    restart = "ok"
  }
  expect {
    outcome   = "recovered"
    causes    = ["memory"]
    steps     = ["liveness", "probe", "diagnose", "repair:memory", "restart", "verify"]
    escalated = false
  }
}

test "a dead agent is restarted without diagnosis" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ops-agent", node = "web-01" }
  }
  world {
    alive = false
  }
  expect {
    outcome = "recovered"
    steps   = ["liveness", "restart", "verify"]
  }
}

test "a passing probe means the cause is elsewhere" {
  alert {
    labels = { alertname = "MedicAgentProbeFailing", agent = "ops-agent", node = "web-01" }
  }
  world {
    probe = ["pass"]
  }
  expect {
    outcome = "healthy"
    steps   = ["liveness", "probe"]
  }
}

test "every cause that holds is repaired, in runbook order" {
  alert {
    labels = { alertname = "MedicAgentCPUHigh", agent = "ops-agent", node = "web-01" }
  }
  world {
    usage = { memory = 0.10, cpu = 0.95, disk = 1.0 }
  }
  expect {
    outcome = "recovered"
    causes  = ["cpu", "disk"]
    steps   = ["liveness", "probe", "diagnose", "repair:cpu", "repair:disk", "restart", "verify"]
  }
}

test "a failed repair script still restarts" {
  alert {
    labels = { alertname = "MedicAgentMemoryHigh", agent = "ops-agent", node = "web-01" }
  }
  world {
    usage   = { memory = 0.90 }
    scripts = { "repair:memory" = 3 }
  }
  expect {
    outcome = "recovered"
    causes  = ["memory"]
  }
}

test "still failing after verify escalates" {
  alert {
    labels = { alertname = "MedicAgentProbeFailing", agent = "ops-agent", node = "web-01" }
  }
  world {
    probe = ["fail"]
  }
  expect {
    outcome   = "escalated"
    causes    = []
    steps     = ["liveness", "probe", "diagnose", "restart", "verify", "escalate"]
    escalated = true
  }
}

test "a failed restart escalates" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ops-agent", node = "web-01" }
  }
  world {
    alive   = false
    restart = "fail"
  }
  expect {
    outcome   = "escalated"
    steps     = ["liveness", "restart", "escalate"]
    escalated = true
  }
}

test "the fourth restart within the hour exhausts the budget" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ops-agent", node = "web-01" }
  }
  world {
    alive = false
  }
  sequence {
    step {
      expect { outcome = "recovered" }
    }
    step {
      after = "10m"
      expect { outcome = "recovered" }
    }
    step {
      after = "10m"
      expect { outcome = "recovered" }
    }
    step {
      after = "10m"
      expect {
        outcome   = "escalated"
        steps     = ["liveness", "budget", "escalate"]
        escalated = true
      }
    }
    step {
      after = "31m" # the first restart has left the 1h window
      expect { outcome = "recovered" }
    }
  }
}

test "an alert without a node label routes by the agent's node" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ops-agent" }
  }
  world {
    alive = false
  }
  expect {
    outcome = "recovered"
    runbook = "agent-recovery"
  }
}

test "an agent nobody configured is unroutable" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ghost" }
  }
  expect {
    outcome   = "unroutable"
    escalated = true
  }
}

test "other alerts are not this runbook's" {
  alert {
    labels = { alertname = "NodeExporterDown", agent = "ops-agent", node = "web-01" }
  }
  expect {
    outcome = "ignored"
  }
}

test "a resolved alert runs nothing" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ops-agent", node = "web-01" }
    status = "resolved"
  }
  expect {
    outcome = "resolved"
  }
}
