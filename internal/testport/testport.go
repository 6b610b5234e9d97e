package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	mu   sync.Mutex
	next int        // the next port to try; 0: not started
	held []*os.File // the reservations, open until the process exits
)

// lowest is the bottom of the range used, above the well-known and the
// usual registered service ports of a developer's machine.
const lowest = 20000

// Free returns a loopback TCP port that was free a moment ago and that the
// kernel does not hand out to outgoing connections.
func Free(t testing.TB) int {
	t.Helper()
	lo, hi := lowest, ephemeralLow()-1
	if hi-lo < 100 {
		// A machine whose ephemeral range starts low: the kernel's choice.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	dir := filepath.Join(os.TempDir(), "medic-testport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if next == 0 {
		// Each process starts at its own place, and walks on from there.
		next = lo + rand.IntN(hi-lo+1)
	}
	for range hi - lo + 1 {
		p := next
		next++
		if next > hi {
			next = lo
		}
		if reserve(dir, p) {
			return p
		}
	}
	t.Fatalf("testport: no free port in %d-%d", lo, hi)
	return 0
}

// reserve takes port p for this process: its lock file, then a bind to
// check that nothing outside the scheme listens on it.
func reserve(dir string, p int) bool {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		f.Close()
		return false
	}
	l.Close()
	held = append(held, f)
	return true
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
