agent "a" {
  command = []
}
