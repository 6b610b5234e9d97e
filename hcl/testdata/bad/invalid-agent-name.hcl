agent "ops:agent" {
  command = ["/bin/a"]
}
