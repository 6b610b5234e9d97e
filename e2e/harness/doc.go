// Package harness starts the real processes medic's end-to-end tests run
// against — redis-server, prometheus, prometheus-alertmanager, `medic bridge`,
// `medic node` and the test agents — on loopback ports chosen at run time,
// and gives the tests small clients for their HTTP APIs.
//
// Every process writes its output to a log file in the test's temporary
// directory; when the test fails, the tail of every log is printed. Every
// process is killed when the test ends. A missing binary fails the test with
// "run make deps"; nothing here ever skips.
package harness
