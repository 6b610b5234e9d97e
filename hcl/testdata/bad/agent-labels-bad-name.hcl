agent "a" {
  command = ["/bin/a"]
  labels  = { cluster = "eu1", "data-center" = "fra" }
}
