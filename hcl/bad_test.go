package hcl

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestBadFiles loads every file (or directory) under testdata/bad and
// compares its diagnostics, as `file:line:col: severity: summary` lines,
// with the golden NAME.want next to it. Each case asserts the exact position
// and summary of every diagnostic, and that loading fails.
func TestBadFiles(t *testing.T) {
	entries, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	cases := 0
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() && !strings.HasSuffix(name, ".hcl") {
			continue
		}
		cases++
		path := filepath.Join("testdata/bad", name)
		want := filepath.Join("testdata/bad", strings.TrimSuffix(name, ".hcl")+".want")
		t.Run(strings.TrimSuffix(name, ".hcl"), func(t *testing.T) {
			cfg, diags := LoadPaths(path)
			if cfg != nil || !diags.HasErrors() {
				t.Fatalf("LoadPaths(%s) = %v, %v; want an error", path, cfg, diags)
			}
			var lines []string
			for _, d := range diags {
				lines = append(lines, DiagnosticLine(d))
			}
			got := strings.Join(lines, "\n") + "\n"
			if *update {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test ./hcl -run TestBadFiles -update and review the result)", err)
			}
			if diff := cmp.Diff(string(b), got); diff != "" {
				t.Errorf("diagnostics of %s (-want +got):\n%s", path, diff)
			}
		})
	}
	if cases < 30 {
		t.Errorf("only %d bad files; the issue asks for at least 30", cases)
	}
}
