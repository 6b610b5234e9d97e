// Package procsig is the one way medic and its tests send a signal. It
// refuses the targets that mean "everyone": pid 0 is the caller's own
// process group, -1 every process the caller may signal, and 1 is init. A
// zero PID read from a stale snapshot once made a test SIGSTOP its own
// process group (go test, make and CI with it); with every signal going
// through here, that mistake is an error instead.
package procsig
