test "the circuit opens after two runs within the hour" {
  alert {
    labels = { alertname = "Guarded", agent = "web-1" }
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
      expect {
        outcome   = "circuit_open"
        steps     = ["liveness", "circuit", "escalate"]
        escalated = true
      }
    }
    step {
      after = "41m" # the first run left the window
      expect { outcome = "recovered" }
    }
  }
}

test "the circuit counts per agent" {
  world {
    alive = false
  }
  sequence {
    step {
      alert {
        labels = { alertname = "Guarded", agent = "web-1" }
      }
      expect { outcome = "recovered" }
    }
    step {
      alert {
        labels = { alertname = "Guarded", agent = "web-1" }
      }
      expect { outcome = "recovered" }
    }
    step {
      alert {
        labels = { alertname = "Guarded", agent = "web-2" }
      }
      expect { outcome = "recovered" }
    }
  }
}

test "one run at a time: the second waits for the first, the third finds the queue full" {
  world {
    alive            = false
    restart_duration = "3m"
  }
  sequence {
    step {
      alert {
        labels = { alertname = "Serial", agent = "web-1" }
      }
      expect {
        outcome = "recovered"
        steps   = ["liveness", "concurrency", "restart", "verify"]
      }
    }
    step {
      after = "1m"
      alert {
        labels = { alertname = "Serial", agent = "web-2" }
      }
      expect { outcome = "recovered" }
    }
    step {
      after = "1m"
      alert {
        labels = { alertname = "Serial", agent = "web-3" }
      }
      expect {
        outcome   = "limited"
        steps     = ["liveness", "concurrency", "escalate"]
        escalated = true
      }
    }
  }
}

test "a wait longer than the limit's ends limited" {
  world {
    alive            = false
    restart_duration = "10m"
  }
  sequence {
    step {
      alert {
        labels = { alertname = "Serial", agent = "web-1" }
      }
      expect { outcome = "recovered" }
    }
    step {
      after = "1m"
      alert {
        labels = { alertname = "Serial", agent = "web-2" }
      }
      expect { outcome = "limited" }
    }
    step {
      after = "10m" # the first run is over
      alert {
        labels = { alertname = "Serial", agent = "web-3" }
      }
      expect { outcome = "recovered" }
    }
  }
}

test "a second alert for an agent in remediation is skipped" {
  alert {
    labels = { alertname = "Serial", agent = "web-1" }
  }
  world {
    alive            = false
    restart_duration = "2m"
  }
  sequence {
    step {
      expect { outcome = "recovered" }
    }
    step {
      after = "1m"
      expect { outcome = "skipped" }
    }
  }
}

test "shadow mode records and runs nothing" {
  alert {
    labels = { alertname = "Careful", agent = "web-1" }
  }
  world {
    usage = { memory = 0.95 }
  }
  expect {
    outcome   = "shadowed"
    causes    = ["memory"]
    steps     = ["liveness", "probe", "diagnose", "repair:memory", "restart", "verify"]
    escalated = false
  }
}

test "approved, it acts" {
  alert {
    labels = { alertname = "Asks", agent = "web-2" }
  }
  world {
    approval = "approve"
  }
  expect {
    outcome = "recovered"
    steps   = ["liveness", "probe", "diagnose", "approval", "liveness", "probe", "restart", "verify"]
  }
}

test "rejected, it does not" {
  alert {
    labels = { alertname = "Asks", agent = "web-2" }
  }
  world {
    approval = "reject"
  }
  expect {
    outcome = "rejected"
    steps   = ["liveness", "probe", "diagnose", "approval"]
  }
}

test "nobody decides within approval_ttl" {
  alert {
    labels = { alertname = "Asks", agent = "web-2" }
  }
  world {
    approval = "none"
  }
  expect {
    outcome = "expired"
  }
}

test "a paused runbook runs nothing" {
  alert {
    labels = { alertname = "Guarded", agent = "web-3" }
  }
  world {
    paused = true
  }
  expect {
    outcome = "paused"
    steps   = ["pause"]
  }
}

test "silenced while acting, the silence lifted once recovered" {
  alert {
    labels = { alertname = "Quiet", agent = "web-3" }
  }
  expect {
    outcome = "recovered"
    steps   = ["liveness", "probe", "diagnose", "silence", "restart", "verify", "unsilence"]
  }
}

test "escalated by command, the silence kept so the page is not doubled" {
  alert {
    labels = { alertname = "Quiet", agent = "web-3" }
  }
  world {
    probe   = ["fail"]
    scripts = { escalate = 0 }
  }
  expect {
    outcome   = "escalated"
    steps     = ["liveness", "probe", "diagnose", "silence", "restart", "verify", "escalate"]
    escalated = true
  }
}
