agent "a" {
  command = ["/bin/a"]

  heartbeat {
    timeout = "15 seconds"
  }
}
