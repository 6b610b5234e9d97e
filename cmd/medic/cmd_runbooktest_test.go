package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medicops/medic/deploy/examples/demo"
	"github.com/medicops/medic/runbooks/library"
)

func TestRunbookTestCommand(t *testing.T) {
	var out, errb bytes.Buffer
	junit := filepath.Join(t.TempDir(), "junit.xml")
	err := runbookTest(context.Background(), testOptions{Paths: []string{"../../runbooks/library"}, JUnit: junit, Coverage: true}, &out, &errb)
	if err != nil {
		t.Fatalf("medic test runbooks/library: %v\n%s%s", err, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 3 || lines[len(lines)-2] != "18 passed, 0 failed" ||
		lines[len(lines)-1] != "coverage: every cause and mode path of every runbook under test was exercised" {
		t.Errorf("output:\n%s", out.String())
	}
	if b, err := os.ReadFile(junit); err != nil || !bytes.Contains(b, []byte(`<testsuites tests="18" failures="0"`)) {
		t.Errorf("JUnit file: %v\n%s", err, b)
	}

	out.Reset()
	err = runbookTest(context.Background(), testOptions{Paths: []string{"../../simulate/testdata/failing"}}, &out, &errb)
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("failing tests: err %v, want exit status 1", err)
	}
	if !strings.HasSuffix(out.String(), "\n1 passed, 2 failed\n") ||
		!strings.Contains(out.String(), "FAIL ../../simulate/testdata/failing/failing.test.hcl:39: forgets the budget\n") {
		t.Errorf("output:\n%s", out.String())
	}

	// A test file with an error runs nothing and exits 1.
	out.Reset()
	errb.Reset()
	bad := filepath.Join(t.TempDir(), "bad.test.hcl")
	if err := os.WriteFile(bad, []byte("test \"x\" {\n  alert {\n    labels = { alertname = \"A\" }\n  }\n  expect { outcome = \"healty\" }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = runbookTest(context.Background(), testOptions{Paths: []string{bad}, Config: []string{"../../runbooks/library"}}, &out, &errb)
	if !errors.As(err, &ec) || ec != 1 || out.Len() != 0 ||
		!strings.Contains(errb.String(), bad+":5:22: error: Unknown outcome") || !strings.Contains(errb.String(), `Did you mean "healthy"?`) {
		t.Errorf("err %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
}

// TestDemoEstateRunbookTests runs deploy/examples/demo/demo.test.hcl
// against the demo estate as medic demo renders it (its files are
// templates), with the library runbooks beside it. make runbook-tests
// runs it.
func TestDemoEstateRunbookTests(t *testing.T) {
	dir := t.TempDir()
	r := strings.NewReplacer("@MEDIC@", "/usr/local/bin/medic", "@DIR@", dir, "@CONFIG@", dir,
		"@NODE_URL@", "http://127.0.0.1:9095", "@BRIDGE_URL@", "http://127.0.0.1:9095", "@REDIS_URL@", "redis://127.0.0.1:6379",
		"@PORT_WEB@", "18081", "@PORT_WORKER@", "18082", "@PORT_BATCH@", "18083", "@PORT_CFG1@", "18084", "@PORT_CFG2@", "18085")
	for _, src := range []fs.FS{demo.FS, library.FS} {
		err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, ".test.hcl") {
				return err
			}
			b, err := fs.ReadFile(src, p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, p), []byte(r.Replace(string(b))), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	err := runbookTest(context.Background(), testOptions{Paths: []string{"../../deploy/examples/demo"}, Config: []string{dir}}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.HasSuffix(out.String(), "\n9 passed, 0 failed\n") {
		t.Errorf("output:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}

// The README's "Test before you trust" stays true: its HCL examples are
// tests that pass, and the failing example prints what it shows.
func TestREADMERunbookTestExamples(t *testing.T) {
	t.Chdir("../..")
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "## Test before you trust")
	end := strings.Index(readme[start:], "\n## ") + start
	if start < 0 || end <= start {
		t.Fatal("README has no Test before you trust section")
	}
	sec := readme[start:end]
	var hclBlocks []string
	for rest := sec; ; {
		i := strings.Index(rest, "```hcl\n")
		if i < 0 {
			break
		}
		rest = rest[i+len("```hcl\n"):]
		j := strings.Index(rest, "```")
		hclBlocks = append(hclBlocks, rest[:j])
		rest = rest[j:]
	}
	if len(hclBlocks) != 2 {
		t.Fatalf("%d hcl examples, want 2", len(hclBlocks))
	}
	dir := t.TempDir()
	lib, _ := filepath.Abs("runbooks/library")
	f := filepath.Join(dir, "readme.test.hcl")
	if err := os.WriteFile(f, []byte("config = \""+lib+"\"\n"+strings.Join(hclBlocks, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := runbookTest(context.Background(), testOptions{Paths: []string{f}}, &out, &errb); err != nil || !strings.HasSuffix(out.String(), "2 passed, 0 failed\n") {
		t.Errorf("README examples: %v\n%s%s", err, out.String(), errb.String())
	}

	out.Reset()
	_ = runbookTest(context.Background(), testOptions{Paths: []string{"simulate/testdata/failing"}}, &out, &errb)
	if !strings.Contains(sec, "```text\n"+out.String()+"```") {
		t.Errorf("the README's failing example is not what medic test prints:\n%s", out.String())
	}
}
