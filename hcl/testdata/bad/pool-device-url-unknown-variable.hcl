agent "cfg-1" {
  command = ["/bin/cfg"]
}

pool "p" {
  agents     = ["cfg-1"]
  device_url = "http://${devices}.example/api"
}
