agent "a" {
  command = ["/bin/a"]
  env     = { "LOG-LEVEL" = "info" }
}
