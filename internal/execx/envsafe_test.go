package execx

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A label value with a NUL byte or invalid UTF-8 cannot go into an
// environment as it is; the command still runs and its variable carries
// the value with those bytes escaped.
func TestHostileValuesStillRun(t *testing.T) {
	env := LabelEnv(map[string]string{"a": "x\x00y", "b": "ok\xff\xfe", "c": "plain é"})
	r := Run(context.Background(), Cmd{
		Argv:    []string{"sh", "-c", `printf '%s|%s|%s' "$MEDIC_LABEL_A" "$MEDIC_LABEL_B" "$MEDIC_LABEL_C"`},
		Env:     env,
		Timeout: 5 * time.Second,
	})
	if !r.OK() {
		t.Fatalf("command did not run: %+v", r)
	}
	if want := `x\x00y|ok\xff\xfe|plain é`; r.Output != want {
		t.Fatalf("output %q, want %q", r.Output, want)
	}
}

func TestEnvValue(t *testing.T) {
	for in, want := range map[string]string{
		"":            "",
		"plain":       "plain",
		"a\x00b":      `a\x00b`,
		"\xff":        `\xff`,
		"é\xc3":       `é\xc3`,
		"tab\tnl\n":   "tab\tnl\n",
		`back\x00lit`: `back\x00lit`,
	} {
		if got := EnvValue(in); got != want {
			t.Errorf("EnvValue(%q) = %q, want %q", in, got, want)
		}
	}
	// Environ applies it to every value, whoever built the map.
	for _, kv := range Environ(map[string]string{"X": "a\x00b"}, false) {
		if strings.ContainsRune(kv, 0) {
			t.Fatalf("Environ left a NUL in %q", kv)
		}
	}
}

type countTracker struct{ started, ended int }

func (c *countTracker) Started(int) { c.started++ }
func (c *countTracker) Ended(int)   { c.ended++ }

// The tracker set last and not yet removed hears Run's groups; removing
// one in any order leaves the others right.
func TestGroupTrackers(t *testing.T) {
	a, b := &countTracker{}, &countTracker{}
	removeA := SetGroupTracker(a)
	removeB := SetGroupTracker(b)
	run := func() {
		if r := Run(context.Background(), Cmd{Argv: []string{"true"}, Timeout: 5 * time.Second}); !r.OK() {
			t.Fatal(r.Err)
		}
	}
	run()
	removeA() // out of order
	run()
	removeB()
	run()
	if a.started != 0 || b.started != 2 || b.ended != 2 {
		t.Errorf("a %+v, b %+v; want b to hear both runs while set", a, b)
	}
}
