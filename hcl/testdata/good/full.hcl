# Every block and attribute, with non-default values.
agent "web" {
  node     = "web-01"
  command  = ["/opt/web/bin/web", "--port", "8081"]
  workdir  = "/var/lib/web"
  env      = { LOG_LEVEL = "debug", GOMAXPROCS = "2" }
  watchdog = false

  heartbeat {
    timeout = "20s"
  }

  probe "http" {
    url           = "http://127.0.0.1:8081/healthz"
    timeout       = "1s"
    interval      = "5s"
    expect_status = 204
    expect_body   = "^ok"
  }

  thresholds {
    memory = 0.7
    cpu    = 0.9
    disk   = 0.95
  }
}

agent "db" {
  pidfile = "/run/db.pid"
  start   = ["systemctl", "start", "db"]
  stop    = ["systemctl", "stop", "db"]

  probe "tcp" {
    address = "127.0.0.1:5432"
  }
}

agent "batch" {
  command = ["/opt/batch/run"]

  probe "exec" {
    command = ["/opt/batch/check", "--quick"]
    timeout = "3s"
  }
}

runbook "web-recovery" {
  match {
    alertname = "MedicAgentDown"
    team      = "web"
  }
  matchers = ["severity=~\"critical|page\""]
  agent    = lookup(alert.labels, "service", "web")

  cause "memory" {
    when    = usage.memory > agent.thresholds.memory && usage.host.memory > 0.5
    repair  = ["/opt/medic/repair/memory.sh", "--drop-caches"]
    timeout = "45s"
  }

  cause "noisy" {
    when = contains(keys(alert.annotations), "noisy") || can(regex("^db", agent.name))
  }

  verify {
    attempts = 5
    interval = "3s"
  }

  escalate {
    webhook   = "https://oncall.example/hooks/medic"
    command   = ["/opt/medic/page.sh"]
    timeout   = "20s"
    retry_for = "2m"
  }

  budget {
    restarts = 1
    window   = "30m"
  }
}

runbook "db-switch" {
  matchers = ["alertname=\"MedicPoolAgentDown\"", "pool=\"dbs\""]

  switchover {
    pool = "dbs"
  }
}

pool "dbs" {
  agents         = ["db", "batch"]
  check_interval = "500ms"
  device_url     = "https://gw.example/devices/${upper(device)}/config"
}
