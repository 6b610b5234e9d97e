agent "cfg-1" {
  command = ["/bin/cfg"]
}

pool "p" {
  agents     = ["cfg-1", "cfg-2"]
  device_url = "http://${device}.example/api"
}
