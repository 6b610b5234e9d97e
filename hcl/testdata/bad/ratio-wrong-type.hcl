agent "a" {
  command = ["/bin/a"]

  thresholds {
    cpu = "high"
  }
}
