agent "a" {
  command = ["/bin/a"]
