agent "a" {
  command = ["/bin/a"]
  pidfile = "/run/a.pid"
  start   = ["systemctl", "start", "a"]
}
