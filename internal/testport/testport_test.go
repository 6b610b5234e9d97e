package testport

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestFreeIsBelowTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := Free(t)
		if p < lowest || p >= ephemeralLow() {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, ephemeralLow())
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
	if len(seen) != 50 {
		t.Errorf("%d distinct ports in 50 picks: a port was handed out twice", len(seen))
	}
}

// Another process (a second test binary) never gets a port this one holds.
func TestReservedAcrossProcesses(t *testing.T) {
	if os.Getenv("TESTPORT_CHILD") != "" {
		for range 200 {
			fmt.Println(Free(t))
		}
		return
	}
	mine := map[int]bool{}
	for range 200 {
		mine[Free(t)] = true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReservedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "TESTPORT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	n := 0
	for _, line := range strings.Fields(string(out)) {
		p, err := strconv.Atoi(line)
		if err != nil {
			continue
		}
		n++
		if mine[p] {
			t.Fatalf("port %d handed to both processes", p)
		}
	}
	if n != 200 {
		t.Fatalf("child printed %d ports:\n%s", n, out)
	}
}
