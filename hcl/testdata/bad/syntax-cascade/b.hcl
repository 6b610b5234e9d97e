runbook "r" {
  match {
    alertname = "A"
  }
  agent = "a2"

  verify {
    attempts = 3
    intervall = "2s"
  }
}

pool "q" {
  agents         = ["a1"]
  check_interval = "2s"
  device_url     = "http://${device}.example/api"
}
