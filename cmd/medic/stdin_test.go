package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medicops/medic/internal/redistest"
)

// withStdio runs f with os.Stdin reading input and returns what f wrote to
// os.Stdout and os.Stderr. It goes through runMain, so kingpin parses the
// arguments exactly as for a user.
func withStdio(t *testing.T, input string, f func() int) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "stdin")
	if err := os.WriteFile(in, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	inF, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer inF.Close()
	outF, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	oldIn, oldOut, oldErr := os.Stdin, os.Stdout, os.Stderr
	os.Stdin, os.Stdout, os.Stderr = inF, outF, errF
	defer func() { os.Stdin, os.Stdout, os.Stderr = oldIn, oldOut, oldErr }()
	code = f()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return code, string(o), string(e)
}

// TestDashReadsStandardInput: "-" as a file argument means standard input
// for publish (positional FILE), plan and run (--alert -), validate and fmt. kingpin
// delivers a bare "-" as "", which used to end in `open : no such file or
// directory`.
func TestDashReadsStandardInput(t *testing.T) {
	payload, err := os.ReadFile(filepath.Join(examplesDir, "agent-alerts.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	for _, f := range []string{estateFile, filepath.Join(libraryDir, "agent-recovery.hcl")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := redistest.Start(t, redistest.Options{})

	tests := []struct {
		name       string
		args       []string
		input      string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"plan --alert -", []string{"plan", "--config.file=" + cfg, "--alert", "-"}, string(payload), 0,
			"alert 1: MedicAgentMemoryHigh", ""},
		{"plan --alert=-", []string{"plan", "--config.file=" + cfg, "--alert=-"}, string(payload), 0,
			"alert 1: MedicAgentMemoryHigh", ""},
		{"run --alert -", []string{"run", "--config.file=" + cfg, "--node.name=nowhere", "--alert", "-"}, string(payload), 0,
			"", "HighRequestLatency 99aa88bb77cc66dd: no runbook matches"},
		{"validate - (clean)", []string{"validate", "-"}, "agent \"x\" {\n  command = [\"/bin/x\"]\n}\n", 0, "", ""},
		{"validate - (error)", []string{"validate", "-"}, "agent \"x\" {\n  comand = [\"/bin/x\"]\n}\n", 1,
			"<stdin>:2:3: error: Unsupported argument", ""},
		{"validate dir -", []string{"validate", cfg, "-"}, "agent \"ops-agent\" {\n  command = [\"/bin/x\"]\n}\n", 1,
			"<stdin>:1:7: error: Duplicate agent \"ops-agent\"", ""},
		{"fmt -", []string{"fmt", "-"}, "agent \"x\" {\ncommand=[\"a\"]\n}\n", 0, "agent \"x\" {\n  command = [\"a\"]\n}\n", ""},
		{"fmt --check -", []string{"fmt", "--check", "-"}, "agent \"x\" {\ncommand=[\"a\"]\n}\n", 1, "<stdin>\n", ""},
		{"fmt - (syntax error)", []string{"fmt", "-"}, "agent \"x\" {\n", 1, "agent \"x\" {\n", "<stdin>:1:11: error: Unclosed configuration block"},
		{"publish -", []string{"publish", "--redis.url=" + srv.URL(), "--pool=sw", "--device=d1", "-"}, `{"vlan":1}`, 0,
			`"seq":1`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := withStdio(t, tc.input, func() int { return runMain(tc.args) })
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantStdout) || !strings.Contains(stderr, tc.wantStderr) {
				t.Fatalf("medic %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant stdout containing %q and stderr containing %q",
					strings.Join(tc.args, " "), code, tc.wantCode, stdout, stderr, tc.wantStdout, tc.wantStderr)
			}
		})
	}
	// The payload published from standard input is the one stored.
	msgs, err := srv.Client().XRange(t.Context(), "medic:{pool:sw}:buf", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range msgs {
		b, _ := json.Marshal(m.Values)
		found = found || strings.Contains(string(b), `vlan`)
	}
	if !found {
		keys, _ := srv.Client().Keys(t.Context(), "*").Result()
		t.Fatalf("published payload not found in medic:{pool:sw}:buf (%d entries); keys: %v", len(msgs), keys)
	}
}
