runbok "r" {
  match { alertname = "A" }
}
