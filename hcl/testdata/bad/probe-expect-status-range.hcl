agent "a" {
  command = ["/bin/a"]

  probe "http" {
    url           = "http://127.0.0.1:8081/healthz"
    expect_status = 700
  }
}
