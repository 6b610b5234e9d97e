# An example estate: two ops agents (one supervised by medic node, one by
# systemd) and a pool of two config-dispatch agents delivering to switches.
# Load it together with runbooks/library/ to try `medic plan`.

agent "ops-agent" {
  node    = "web-01"
  command = ["/opt/ops/agent", "--port", "8081"]
  workdir = "/var/lib/ops-agent"
  env     = { LOG_LEVEL = "info" }

  heartbeat {
    timeout = "15s"
  }

  probe "http" {
    url     = "http://127.0.0.1:8081/healthz"
    timeout = "2s"
  }

  thresholds {
    memory = 0.80
    cpu    = 0.80
    disk   = 0.99
  }
}

agent "log-shipper" {
  node    = "web-02"
  pidfile = "/run/log-shipper.pid"
  start   = ["systemctl", "start", "log-shipper"]
  stop    = ["systemctl", "stop", "log-shipper"]
  workdir = "/var/lib/log-shipper"

  probe "tcp" {
    address = "127.0.0.1:5140"
  }

  thresholds {
    memory = 0.90
  }
}

agent "cfg-agent-1" {
  node    = "cfg-01"
  command = ["/usr/local/bin/medic", "agent", "--config.file=/etc/medic", "--pool=switches", "--agent.id=cfg-agent-1"]

  probe "exec" {
    command = ["/usr/local/bin/medic-agent-check", "cfg-agent-1"]
  }
}

agent "cfg-agent-2" {
  node    = "cfg-02"
  command = ["/usr/local/bin/medic", "agent", "--config.file=/etc/medic", "--pool=switches", "--agent.id=cfg-agent-2"]

  probe "exec" {
    command = ["/usr/local/bin/medic-agent-check", "cfg-agent-2"]
  }
}

pool "switches" {
  agents         = ["cfg-agent-1", "cfg-agent-2"]
  check_interval = "2s"
  device_url     = "http://${device}.switches.example/api/config"
}
