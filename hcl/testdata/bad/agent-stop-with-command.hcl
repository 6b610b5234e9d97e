agent "a" {
  command = ["/bin/a"]
  stop    = ["systemctl", "stop", "a"]
}
