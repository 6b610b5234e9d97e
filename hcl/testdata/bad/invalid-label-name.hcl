runbook "r" {
  match {
    alert-name = "A"
  }
}
