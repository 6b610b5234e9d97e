agent "a" {
  pidfile = "/run/a.pid"
}
