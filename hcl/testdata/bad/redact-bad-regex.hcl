runbook "r" {
  match { alertname = "A" }
  redact = [
    "(?i)token=\\S+",
    "(?i)password=(\\S+",
    "",
  ]
}
