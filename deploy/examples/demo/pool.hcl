# Config dispatch in the demo: pool "demo-switches" with two config agents.
# Each is the medic binary in demo-agent mode with --pool: the same
# consumer as `medic agent`, plus the demo agent's /healthz and /die. They
# deliver to the demo's built-in device on the demo's own listener, which
# applies a device's configs strictly in seq order, fences stale epochs and
# lists what it applied at GET /demo/devices/{device}.
#
# watchdog = false: killing the active agent should show the coordinator
# switching the pool over, not the watchdog restarting the agent within
# milliseconds (it would come back as the active agent). An alert brings it
# back through the agent-recovery runbook, as a standby.

agent "demo-cfg-1" {
  node     = "demo"
  command  = ["@MEDIC@", "demo-agent", "--name=demo-cfg-1", "--listen=127.0.0.1:@PORT_CFG1@", "--pool=demo-switches", "--config.file=@CONFIG@", "--redis.url=@REDIS_URL@"]
  workdir  = "@DIR@/demo-cfg-1"
  watchdog = false

  probe "http" {
    url      = "http://127.0.0.1:@PORT_CFG1@/healthz"
    timeout  = "1s"
    interval = "2s"
  }
}

agent "demo-cfg-2" {
  node     = "demo"
  command  = ["@MEDIC@", "demo-agent", "--name=demo-cfg-2", "--listen=127.0.0.1:@PORT_CFG2@", "--pool=demo-switches", "--config.file=@CONFIG@", "--redis.url=@REDIS_URL@"]
  workdir  = "@DIR@/demo-cfg-2"
  watchdog = false

  probe "http" {
    url      = "http://127.0.0.1:@PORT_CFG2@/healthz"
    timeout  = "1s"
    interval = "2s"
  }
}

pool "demo-switches" {
  agents         = ["demo-cfg-1", "demo-cfg-2"]
  check_interval = "1s"
  device_url     = "@BRIDGE_URL@/demo/devices/${device}/config"
}
