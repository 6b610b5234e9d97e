package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	libraryDir  = "../../runbooks/library"
	estateFile  = "../../deploy/examples/estate.hcl"
	examplesDir = "../../deploy/examples"
)

func validateTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := validateTestFile(t, dir, "bad.hcl", "runbook \"r\" {\n  match {\n    alertname = \"A\"\n  }\n\n  cause \"m\" {\n    when = usage.mem > 0.5\n  }\n}\n")
	warn := validateTestFile(t, dir, "warn.hcl", "runbook \"all\" {\n}\n")
	for _, tc := range []struct {
		name      string
		paths     []string
		exit1     bool
		wantLines []string // exact lines, in order, that must appear
	}{
		{name: "library with estate is clean", paths: []string{estateFile, libraryDir}},
		{
			name:  "error with snippet",
			paths: []string{bad},
			exit1: true,
			wantLines: []string{
				bad + ":7:18: error: Unknown attribute",
				`  usage has no attribute "mem". Did you mean "memory"? It has cpu, disk, host and memory.`,
				"    7 |     when = usage.mem > 0.5",
				"      |                  ^~~",
			},
		},
		{
			name:      "warnings do not fail",
			paths:     []string{warn},
			wantLines: []string{warn + ":1:1: warning: Runbook matches every alert"},
		},
		{
			name:      "missing path",
			paths:     []string{filepath.Join(dir, "nope.hcl")},
			exit1:     true,
			wantLines: []string{filepath.Join(dir, "nope.hcl") + ":1:1: error: Cannot read configuration"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := validate(tc.paths, "text", &out)
			var ec exitCode
			if tc.exit1 != (errors.As(err, &ec) && ec == 1) || (!tc.exit1 && err != nil) {
				t.Fatalf("validate = %v, want exit 1: %v\n%s", err, tc.exit1, out.String())
			}
			if len(tc.wantLines) == 0 && out.Len() != 0 {
				t.Errorf("unexpected output:\n%s", out.String())
			}
			if !strings.Contains(out.String(), strings.Join(tc.wantLines, "\n")) {
				t.Errorf("output lacks\n%s\ngot:\n%s", strings.Join(tc.wantLines, "\n"), out.String())
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		var out bytes.Buffer
		if err := validate([]string{bad}, "json", &out); err == nil {
			t.Fatal("no error")
		}
		var got []map[string]any
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		want := map[string]any{"file": bad, "line": 7.0, "column": 18.0, "end_line": 7.0, "end_column": 21.0, "severity": "error", "summary": "Unknown attribute"}
		if len(got) != 1 {
			t.Fatalf("got %v", got)
		}
		for k, v := range want {
			if got[0][k] != v {
				t.Errorf("%s = %v, want %v", k, got[0][k], v)
			}
		}
		out.Reset()
		if err := validate([]string{libraryDir}, "json", &out); err != nil || strings.TrimSpace(out.String()) != "[]" {
			t.Errorf("clean json = %v, %q; want []", err, out.String())
		}
	})

	t.Run("exit codes through main", func(t *testing.T) {
		if code := runMain([]string{"validate", estateFile, libraryDir}); code != 0 {
			t.Errorf("clean: exit %d", code)
		}
		if code := runMain([]string{"validate", "--format=json", bad}); code != 1 {
			t.Errorf("bad: exit %d", code)
		}
	})
}

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	ugly := "agent \"a\" {\ncommand=[\"/bin/a\"]\n    workdir   = \"/w\"\n}\n"
	pretty := "agent \"a\" {\n  command = [\"/bin/a\"]\n  workdir = \"/w\"\n}\n"
	u := validateTestFile(t, dir, "u.hcl", ugly)
	p := validateTestFile(t, dir, "p.hcl", pretty)
	broken := validateTestFile(t, t.TempDir(), "broken.hcl", "agent \"a\" {\n")

	var out, errOut bytes.Buffer
	if err := formatFiles([]string{dir}, true, &out, &errOut); !exitedWith1(err) || out.String() != u+"\n" {
		t.Fatalf("fmt --check = %v, %q; want exit 1 listing %s", err, out.String(), u)
	}
	if b, _ := os.ReadFile(u); string(b) != ugly {
		t.Fatal("fmt --check rewrote the file")
	}
	out.Reset()
	if err := formatFiles([]string{dir}, false, &out, &errOut); err != nil || out.String() != u+"\n" {
		t.Fatalf("fmt = %v, %q; want %s rewritten", err, out.String(), u)
	}
	for _, f := range []string{u, p} {
		if b, _ := os.ReadFile(f); string(b) != pretty {
			t.Errorf("%s = %q, want %q", f, b, pretty)
		}
	}
	out.Reset()
	if err := formatFiles([]string{dir}, true, &out, &errOut); err != nil || out.Len() != 0 {
		t.Errorf("fmt --check after fmt = %v, %q; want clean", err, out.String())
	}
	out.Reset()
	errOut.Reset()
	if err := formatFiles([]string{broken}, false, &out, &errOut); !exitedWith1(err) || !strings.HasPrefix(errOut.String(), broken+":1:11: error: Unclosed configuration block") {
		t.Errorf("fmt of a broken file = %v, stderr %q", err, errOut.String())
	}
	if b, _ := os.ReadFile(broken); string(b) != "agent \"a\" {\n" {
		t.Error("fmt rewrote a file it could not parse")
	}
	out.Reset()
	if err := formatFiles([]string{libraryDir, estateFile}, true, &out, &errOut); err != nil || out.Len() != 0 {
		t.Errorf("the library and the estate are not in canonical format: %v %s", err, out.String())
	}
}

func exitedWith1(err error) bool {
	var ec exitCode
	return errors.As(err, &ec) && ec == 1
}

func TestPlan(t *testing.T) {
	cfgDir := t.TempDir()
	for _, f := range append(validateTestGlob(t, filepath.Join(libraryDir, "*.hcl")), estateFile) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		validateTestFile(t, cfgDir, filepath.Base(f), string(b))
	}
	for _, tc := range []struct {
		payload string
		want    []string
	}{
		{"pool-agent-down.json", []string{
			"alert 1: MedicPoolAgentDown{agent=\"cfg-agent-1\", instance=\"cfg-01:9105\", job=\"medic-node\", node=\"cfg-01\", pool=\"switches\", severity=\"critical\"}",
			"  runbook:  pool-switchover (" + filepath.Join(cfgDir, "pool-switchover.hcl") + ":4,1)",
			"    1. switchover  through the bridge's pool coordinator, pool switches (agents cfg-agent-1, cfg-agent-2): set lock, choose a healthy agent other than cfg-agent-1, move its undelivered messages in order, drain the buffer, clear lock",
		}},
		{"heartbeat-missed.json", []string{
			"  runbook:  heartbeat-restart (" + filepath.Join(cfgDir, "heartbeat-restart.hcl") + ":4,1)",
			"    3. diagnose    no causes: restart alone",
		}},
		{"agent-alerts.json", []string{
			"    3. diagnose    sample usage (memory, cpu, disk of /var/lib/ops-agent; thresholds memory 0.80, cpu 0.80, disk 0.99) and test each cause:",
			"                   cause memory: when usage.memory > agent.thresholds.memory → repair [\"/opt/medic/repair/memory.sh\"] (timeout 30s)",
			"  node:     web-02 (agent \"log-shipper\"'s node attribute)",
			"  ignored:  resolved: medic acts on firing alerts only",
			"  ignored:  agent \"ghost-agent\" is not defined in the loaded configuration; node web-03 records the run as \"skipped\"",
			"  ignored:  no runbook matches",
		}},
	} {
		t.Run(tc.payload, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := plan(cfgDir, filepath.Join(examplesDir, tc.payload), &out, &errOut); err != nil {
				t.Fatalf("plan: %v\n%s", err, errOut.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w+"\n") {
					t.Errorf("plan output lacks line\n%s\ngot:\n%s", w, out.String())
				}
			}
		})
	}
	var out, errOut bytes.Buffer
	notJSON := validateTestFile(t, t.TempDir(), "a.json", "not json")
	if err := plan(cfgDir, notJSON, &out, &errOut); err == nil || !strings.Contains(err.Error(), "not an Alertmanager webhook payload") {
		t.Errorf("plan on a non-payload: %v", err)
	}
}

func validateTestGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v %v", pattern, m, err)
	}
	return m
}
