agent "a" {
  command = ["", "--flag"]
}
