agent {
  command = ["/bin/a"]
}
