agent "a" {
  command = ["/bin/a"]

  probe "http" {
    url = 8081
  }
}
