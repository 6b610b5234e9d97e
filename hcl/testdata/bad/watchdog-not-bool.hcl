agent "a" {
  command  = ["/bin/a"]
  watchdog = "yes"
}
