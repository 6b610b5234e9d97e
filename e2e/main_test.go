package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/medicops/medic/e2e/harness"
)

// bins are medic and the test agent, built from this tree once per run.
var bins harness.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "medic-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bins, err = harness.Build(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the binaries under test failed; the e2e tests cannot run:\n%v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	// Agents are children of medic node and die with it; anything a
	// crashed node left behind runs from dir and is reaped here.
	if killed := harness.ReapUnder(dir); len(killed) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: reaped %d leftover processes: %v\n", len(killed), killed)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
