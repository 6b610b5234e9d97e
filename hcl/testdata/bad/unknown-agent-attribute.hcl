agent "a" {
  comand = ["/bin/a"]
}
