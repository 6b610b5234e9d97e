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
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowest is the bottom of the range used, above the well-known and the
// usual registered service ports of a developer's machine.
const lowest = 20000

// Free returns a loopback TCP port that was free a moment ago and that the
// kernel does not hand out to outgoing connections.
func Free(t testing.TB) int {
	t.Helper()
	lo, hi := lowest, ephemeralLow()-1
	for range 200 {
		p := lo
		if hi > lo {
			p = lo + rand.IntN(hi-lo+1)
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			l.Close()
			return p
		}
	}
	// A machine whose ephemeral range starts low: the kernel's choice.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is "127.0.0.1:PORT" with a Free port.
func Addr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(Free(t)) }

// ephemeralLow is the bottom of the kernel's ephemeral port range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
