agent "a" {
  command = ["/bin/a"]

  probe "tcp" {
    address = "127.0.0.1"
  }
}
