pool "p" {
  agents     = []
  device_url = "http://${device}.example/api"
}
