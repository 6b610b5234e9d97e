package simulate

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medicops/medic/hcl"
)

func runSuite(t *testing.T, paths ...string) (*Report, string) {
	t.Helper()
	s, diags := LoadSuite(paths, nil)
	if diags.HasErrors() {
		var b bytes.Buffer
		_ = hcl.WriteDiagnostics(&b, diags, s.Sources)
		t.Fatalf("load %v:\n%s", paths, b.String())
	}
	rep := s.Run(context.Background())
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return rep, b.String()
}

// The library's own tests pass and leave no cause or mode path of any
// library runbook unexercised.
func TestLibraryRunbookTests(t *testing.T) {
	rep, out := runSuite(t, "../runbooks/library")
	if rep.Failed != 0 || rep.Passed < 15 {
		t.Fatalf("want every library test to pass (at least 15), got:\n%s", out)
	}
	if !strings.HasSuffix(out, fmt.Sprintf("%d passed, 0 failed\n", rep.Passed)) {
		t.Errorf("last line is not the count:\n%s", out)
	}
	if gaps := rep.Coverage(); len(gaps) != 0 {
		var b bytes.Buffer
		_ = WriteCoverage(&b, gaps)
		t.Errorf("library runbooks not covered:\n%s", b.String())
	}
}

// Circuit, concurrency (wait and queue), lease, shadow, approve, pause
// and silence, in virtual time, through the engine's own controls.
func TestSafetyControlsInVirtualTime(t *testing.T) {
	rep, out := runSuite(t, "testdata/safety")
	if rep.Failed != 0 || rep.Passed != 12 {
		t.Fatalf("want 12 passed, got:\n%s", out)
	}
}

// Failing tests print a diff of expected against actual under a line
// naming the test, with the file:line of the expect block.
func TestFailingTestsShowTheirDiff(t *testing.T) {
	rep, out := runSuite(t, "testdata/failing")
	want := `FAIL testdata/failing/failing.test.hcl:13: expects a repair the usage does not call for
     testdata/failing/failing.test.hcl:20: expect (- expected, + actual)
       outcome   = "recovered"
     - causes    = ["memory"]
     + causes    = []
     - steps     = ["liveness", "probe", "diagnose", "repair:memory", "restart", "verify"]
     + steps     = ["liveness", "probe", "diagnose", "restart", "verify"]
       reason: healthy again after restart (verify attempt 1 of 3)
ok   testdata/failing/failing.test.hcl:27: passes
FAIL testdata/failing/failing.test.hcl:39: forgets the budget
     testdata/failing/failing.test.hcl:60: step 4: expect (- expected, + actual)
     - outcome   = "recovered"
     + outcome   = "escalated"
     - escalated = false
     + escalated = true
       reason: restart budget exhausted: 3 in 1h
1 passed, 2 failed
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if rep.Passed != 1 || rep.Failed != 2 {
		t.Errorf("passed %d failed %d, want 1 and 2", rep.Passed, rep.Failed)
	}

	var b bytes.Buffer
	if err := rep.WriteJUnit(&b); err != nil {
		t.Fatal(err)
	}
	var j junitSuites
	if err := xml.Unmarshal(b.Bytes(), &j); err != nil {
		t.Fatalf("JUnit XML does not parse: %v\n%s", err, b.String())
	}
	if j.Tests != 3 || j.Fails != 2 || len(j.Suites) != 1 || len(j.Suites[0].Cases) != 3 {
		t.Fatalf("JUnit: %+v", j)
	}
	c := j.Suites[0].Cases[2]
	if c.Name != "forgets the budget" || c.Failure == nil || c.Failure.Message != `outcome: expected "recovered", got "escalated"` {
		t.Errorf("JUnit case: %+v %+v", c, c.Failure)
	}
	if j.Suites[0].Cases[1].Failure != nil {
		t.Errorf("the passing test has a failure in JUnit")
	}
}

// Errors in test files read like config errors: file:line:col, and a
// suggestion for what was probably meant.
func TestTestFileDiagnostics(t *testing.T) {
	dir := t.TempDir()
	src := `config = "` + filepath.Join(mustAbs(t, "../runbooks/library")) + `"

agent "ops-agent" {
  node    = "web-01"
  pidfile = "/run/ops-agent.pid"
  start   = ["systemctl", "start", "ops-agent"]
}

test "typos" {
  alert {
    labels = { alertname = "MedicAgentDown", agent = "ops-agent" }
  }
  world {
    probe   = ["fial"]
    usage   = { mem = 0.9 }
    scripts = { "repair:memroy" = 1 }
  }
  expect {
    outcome = "recoverd"
    causes  = ["cpus"]
    steps   = ["liveness", "restrat"]
  }
  expekt {}
}
`
	path := filepath.Join(dir, "typos.test.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, diags := LoadSuite([]string{path}, nil)
	var b bytes.Buffer
	_ = hcl.WriteDiagnostics(&b, diags, s.Sources)
	out := b.String()
	for _, want := range []string{
		path + `:23:3: error: Unsupported block type`, `Did you mean "expect"?`,
		path + `:14:16: error: Invalid probe value`, `Did you mean "fail"?`,
		path + `:15:17: error: Unknown usage ratio`, `Did you mean "memory"?`,
		path + `:16:17: error: Unknown script`, `Did you mean "repair:memory"?`,
		path + `:19:15: error: Unknown outcome`, `Did you mean "recovered"?`,
		path + `:20:16: error: Unknown cause`, `Did you mean "cpu"?`,
		path + `:21:28: error: Unknown step`, `Did you mean "restart"?`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, out)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The configuration loader skips test files, so they live beside the
// runbooks: the library still loads as three runbooks.
func TestLoaderSkipsTestFiles(t *testing.T) {
	cfg, diags := hcl.Load("../runbooks/library")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if len(cfg.Runbooks) != 3 || len(cfg.Agents) != 0 {
		t.Errorf("library: %d runbooks, %d agents; want 3 and 0 (the test files' fixture agents must not load)", len(cfg.Runbooks), len(cfg.Agents))
	}
}

// --coverage names what no test exercised, and only that.
func TestCoverageListsGaps(t *testing.T) {
	rep, _ := runSuite(t, "testdata/safety")
	var b bytes.Buffer
	if err := WriteCoverage(&b, rep.Coverage()); err != nil {
		t.Fatal(err)
	}
	want := `coverage: 5 not exercised by any test:
  testdata/safety/estate.hcl:34: runbook guarded: path "budget exhausted"
  testdata/safety/estate.hcl:48: runbook one-at-a-time: path "budget exhausted"
  testdata/safety/estate.hcl:70: runbook asks: path "budget exhausted"
  testdata/safety/estate.hcl:70: runbook asks: path "escalate"
  testdata/safety/estate.hcl:78: runbook quiet: path "budget exhausted"
`
	if b.String() != want {
		t.Errorf("coverage:\n%s\nwant:\n%s", b.String(), want)
	}
}
