runbook "r" {
  match { alertname = "A" }
  mode  = "shadw"
}
