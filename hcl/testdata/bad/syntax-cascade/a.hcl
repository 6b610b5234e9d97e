agent "a1" {
  command = ["/bin/a"]

agent "a2" {
  command = ["/bin/a"]
}

pool "p" {
  agents         = ["a1", "a2"]
  check_interval = "2s"
  device_url     = "http://${device}.example/api"
}
