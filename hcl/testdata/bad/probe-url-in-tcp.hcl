agent "a" {
  command = ["/bin/a"]

  probe "tcp" {
    address = "127.0.0.1:9000"
    url     = "http://127.0.0.1:9000/"
  }
}
