agent "a" {
  command = ["/bin/a"]

  probe "http" {
    timeout = "1s"
  }
}
