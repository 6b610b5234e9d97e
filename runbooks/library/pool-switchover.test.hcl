# Tests of pool-switchover.hcl: `medic test runbooks/library`. The pool's
# coordinator is simulated: `switchover = "fail"` makes it fail.

agent "cfg-agent-1" {
  node    = "dispatch-01"
  pidfile = "/run/cfg-agent-1.pid"
  start   = ["systemctl", "start", "cfg-agent-1"]
}

agent "cfg-agent-2" {
  node    = "dispatch-02"
  pidfile = "/run/cfg-agent-2.pid"
  start   = ["systemctl", "start", "cfg-agent-2"]
}

test "the pool moves away from its dead agent" {
  alert {
    labels = { alertname = "MedicPoolAgentDown", agent = "cfg-agent-1", node = "dispatch-01", pool = "switches" }
  }
  expect {
    outcome   = "switched"
    steps     = ["switchover"]
    escalated = false
  }
}

test "a failed switchover is escalated" {
  alert {
    labels = { alertname = "MedicPoolAgentDown", agent = "cfg-agent-2", node = "dispatch-02", pool = "switches" }
  }
  world {
    switchover = "fail"
  }
  expect {
    outcome   = "escalated"
    steps     = ["switchover", "escalate"]
    escalated = true
  }
}
