agent "a" {
  command = ["/bin/a"]

  probe "http" {
    url = "127.0.0.1:8081/healthz"
  }
}
