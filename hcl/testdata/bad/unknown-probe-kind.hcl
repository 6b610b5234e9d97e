agent "a" {
  command = ["/bin/a"]

  probe "htp" {
    url = "http://127.0.0.1:8081/healthz"
  }
}
