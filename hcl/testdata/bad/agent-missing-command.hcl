agent "a" {
  workdir = "/var/lib/a"
}
