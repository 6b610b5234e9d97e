agent "a" {
  command = ["/bin/a"]
  workdir = "var/lib/a"
}
