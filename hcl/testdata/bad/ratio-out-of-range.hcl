agent "a" {
  command = ["/bin/a"]

  thresholds {
    memory = 80
  }
}
