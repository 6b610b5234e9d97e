agent "a" {
  command = "/bin/a --port 8081"
}
