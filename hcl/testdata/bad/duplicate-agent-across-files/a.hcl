agent "ops-agent" {
  command = ["/bin/ops-agent"]
}
