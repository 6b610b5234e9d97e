package runbooks

import (
	"context"
	"testing"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/internal/execx"
)

// A nil *controls.Store (medic node without Redis passes one) still means
// "no shared controls" once Controls is an interface: without this, the
// engine would call methods on the nil store.
func TestNilStoreMeansNoControls(t *testing.T) {
	var store *controls.Store
	e := New(Options{Controls: store})
	if e.opts.Controls != nil {
		t.Fatalf("Controls = %#v, want nil", e.opts.Controls)
	}
	if New(Options{Controls: controls.New(nil, "")}).opts.Controls == nil {
		t.Fatal("a real store was dropped")
	}
}

// Exec defaults to running the script.
func TestExecDefaultRunsTheScript(t *testing.T) {
	e := New(Options{})
	res := e.opts.Exec(context.Background(), "repair:x", execx.Cmd{Argv: []string{"/bin/sh", "-c", "exit 3"}, Timeout: 5e9})
	if res.ExitCode != 3 {
		t.Fatalf("exit code %d, want 3 (%v)", res.ExitCode, res.Err)
	}
}
