# the same name in another file
agent "ops-agent" {
  pidfile = "/run/ops-agent.pid"
  start   = ["systemctl", "start", "ops-agent"]
}
