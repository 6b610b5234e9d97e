agent "a" {
  command = ["/bin/a"]
  node    = alert.labels.node
}
