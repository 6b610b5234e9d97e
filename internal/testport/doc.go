// Package testport hands tests free loopback ports for the servers they
// start as separate processes (redis-server, medic, test agents).
//
// Asking the kernel for port 0 and passing the number on is racy in a
// particular way: the number comes from the ephemeral range, which the
// kernel also hands to every outgoing connection, so between our close and
// the child's bind a client socket of any test can take it ("address
// already in use", seen in CI). Ports are picked instead below the
// ephemeral range, where the kernel never assigns one by itself, and
// checked free by binding them.
//
// Test binaries run side by side (go test -p), and a test may pick all its
// ports before any child binds one, so a pick is also reserved: an flock on
// a file named after the port, held until the test binary exits (the
// kernel drops it then, however it ends). No two pickers, in one process
// or in several, hold the same port.
package testport
