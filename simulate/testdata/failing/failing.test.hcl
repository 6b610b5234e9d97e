# Tests that fail on purpose: simulate's own tests check their diff.
config = "../../../runbooks/library"

agent "ops-agent" {
  node    = "web-01"
  pidfile = "/run/ops-agent.pid"
  start   = ["systemctl", "start", "ops-agent"]
  probe "http" {
    url = "http://127.0.0.1:8081/healthz"
  }
}

test "expects a repair the usage does not call for" {
  alert {
    labels = { alertname = "MedicAgentProbeFailing", agent = "ops-agent", node = "web-01" }
  }
  world {
    usage = { memory = 0.50 }
  }
  expect {
    outcome = "recovered"
    causes  = ["memory"]
    steps   = ["liveness", "probe", "diagnose", "repair:memory", "restart", "verify"]
  }
}

test "passes" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ops-agent", node = "web-01" }
  }
  world {
    alive = false
  }
  expect {
    outcome = "recovered"
  }
}

test "forgets the budget" {
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
      after = "1m"
      expect { outcome = "recovered" }
    }
    step {
      after = "1m"
      expect { outcome = "recovered" }
    }
    step {
      after = "1m"
      expect {
        outcome   = "recovered"
        escalated = false
      }
    }
  }
}
