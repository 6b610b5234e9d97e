package execx

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/internal/procsig"
)

func TestRunExitCodesAndOutput(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		wantCode int
		wantOut  string
		wantErr  bool
	}{
		{"ok", []string{"sh", "-c", "echo hello"}, 0, "hello\n", false},
		{"nonzero", []string{"sh", "-c", "echo bad >&2; exit 3"}, 3, "bad\n", true},
		{"missing", []string{"/nonexistent/medic-x"}, -1, "", true},
		{"empty", nil, -1, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(context.Background(), Cmd{Argv: tc.argv, Timeout: 5 * time.Second})
			if r.ExitCode != tc.wantCode || r.Output != tc.wantOut || (r.Err != nil) != tc.wantErr {
				t.Fatalf("got code=%d out=%q err=%v", r.ExitCode, r.Output, r.Err)
			}
		})
	}
}

func TestRunCapsOutput(t *testing.T) {
	r := Run(context.Background(), Cmd{Argv: []string{"sh", "-c", "head -c 100000 /dev/zero"}, MaxOutput: 1000})
	if len(r.Output) != 1000 || !r.Truncated || !r.OK() {
		t.Fatalf("len=%d truncated=%v err=%v", len(r.Output), r.Truncated, r.Err)
	}
}

// A script that backgrounds a grandchild and hangs is killed at the
// timeout together with the grandchild.
func TestRunTimeoutKillsGrandchildren(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "grandchild.pid")
	script := "sleep 300 & echo $! > " + pidfile + "; wait"
	start := time.Now()
	r := Run(context.Background(), Cmd{Argv: []string{"sh", "-c", script}, Timeout: 300 * time.Millisecond})
	if !r.TimedOut || r.Err == nil {
		t.Fatalf("want timeout, got %+v", r)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Run took %s after a 300ms timeout", d)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(2 * time.Second)
	for procsig.Process(pid, 0) == nil {
		// a zombie still answers kill(0) until reaped by init; check state
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Label values are data: shell metacharacters in them execute nothing.
func TestLabelEnvNeverInterpreted(t *testing.T) {
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	victim := filepath.Join(dir, "x")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{
		"agent":    "$(touch " + pwned + ")",
		"evil-key": "; rm -rf " + victim,
		"q":        "`touch " + pwned + "`",
	}
	r := Run(context.Background(), Cmd{Argv: []string{"printenv"}, Env: LabelEnv(labels)})
	if !r.OK() {
		t.Fatal(r.Err)
	}
	if !strings.Contains(r.Output, "MEDIC_LABEL_AGENT=$(touch "+pwned+")") || !strings.Contains(r.Output, "MEDIC_LABEL_EVIL_KEY=; rm -rf") {
		t.Fatalf("labels not passed verbatim:\n%s", r.Output)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("label value was executed")
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatal("label value removed a file")
	}
}

func TestSanitizeEnvName(t *testing.T) {
	for in, want := range map[string]string{"agent": "AGENT", "a-b.c": "A_B_C", "x$(y)": "X__Y_", "ok_1": "OK_1"} {
		if got := SanitizeEnvName(in); got != want {
			t.Errorf("%q: got %q want %q", in, got, want)
		}
	}
}

// Label names that collide once sanitised are all kept, named by the
// byte order of the original names, whatever order the map gives.
func TestLabelEnvCollisions(t *testing.T) {
	labels := map[string]string{"a-b": "dash", "a_b": "underscore", "A_B": "upper", "A_B_2": "real two", "x": "plain"}
	want := map[string]string{
		"MEDIC_LABEL_A_B":   "upper",      // "A_B" sorts first
		"MEDIC_LABEL_A_B_2": "real two",   // a label's own name is never taken by a suffix
		"MEDIC_LABEL_A_B_3": "dash",       // "a-b" < "a_b"
		"MEDIC_LABEL_A_B_4": "underscore", //
		"MEDIC_LABEL_X":     "plain",
	}
	for i := 0; i < 20; i++ {
		got := LabelEnv(labels)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("LabelEnv -want +got:\n%s", diff)
		}
	}
}
