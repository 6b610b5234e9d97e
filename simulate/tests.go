package simulate

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/runbooks"
)

// StepNames are the step names an expect block may list (besides
// "repair:CAUSE").
var StepNames = []string{
	"pause", "liveness", "probe", "diagnose", "circuit", "approval", "silence", "concurrency", "lease",
	"budget", "backoff", "restart", "verify", "escalate", "switchover", "unsilence",
}

// Suite is a set of test files, loaded with their configurations.
type Suite struct {
	Files []*SuiteFile
	// Sources are the bytes of every file read, for diagnostics' snippets.
	Sources map[string][]byte
}

// SuiteFile is one test file and the configuration it tests.
type SuiteFile struct {
	*hcl.TestFile
	Config *hcl.Config
}

// LoadSuite reads the test files under paths and the configuration of
// each, and checks every name a test uses (outcomes, steps, causes,
// script names) against them. configOverride, when set, replaces every
// file's `config`.
func LoadSuite(paths []string, configOverride []string) (*Suite, hcl2.Diagnostics) {
	s := &Suite{Sources: map[string][]byte{}}
	files, diags := hcl.LoadTestFiles(paths...)
	for _, f := range files {
		s.Sources[f.Name] = f.Bytes
	}
	type cached struct {
		cfg   *hcl.Config
		diags hcl2.Diagnostics
	}
	cache := map[string]cached{}
	for _, f := range files {
		cfgPaths := f.Config
		if len(configOverride) > 0 {
			cfgPaths = configOverride
		}
		key := strings.Join(cfgPaths, "\x00")
		c, ok := cache[key]
		fresh := !ok || f.Fixtures != nil
		if fresh {
			srcs, d := hcl.ReadSources(cfgPaths...)
			if f.Fixtures != nil {
				srcs = append(srcs, *f.Fixtures)
			}
			if !d.HasErrors() {
				cfg, more := hcl.LoadSources(srcs)
				d = append(d, more...)
				c.cfg = cfg
			}
			if d.HasErrors() && f.ConfigRange != nil {
				d = append(hcl2.Diagnostics{{Severity: hcl2.DiagError, Summary: "Configuration under test does not load",
					Detail: "The configuration this file tests has errors; they follow.", Subject: f.ConfigRange}}, d...)
			}
			c.diags = d
			for _, src := range srcs {
				if _, seen := s.Sources[src.Name]; !seen {
					s.Sources[src.Name] = src.Bytes
				}
			}
			if f.Fixtures == nil {
				cache[key] = c
			} else if c.cfg != nil {
				// Fixture agents of a test file must not hide its
				// diagnostics' snippets: keep the real file's bytes.
				s.Sources[f.Name] = f.Bytes
			}
		}
		if fresh {
			// A configuration shared by several files reports once.
			diags = append(diags, c.diags...)
		}
		if c.cfg == nil {
			continue
		}
		diags = append(diags, checkNames(f, c.cfg)...)
		s.Files = append(s.Files, &SuiteFile{TestFile: f, Config: c.cfg})
	}
	return s, diags
}

// checkNames reports names in tests that cannot be right, with
// did-you-mean suggestions.
func checkNames(f *hcl.TestFile, cfg *hcl.Config) hcl2.Diagnostics {
	var diags hcl2.Diagnostics
	outcomes := Outcomes()
	for _, t := range f.Tests {
		for _, st := range t.Steps {
			e := st.Expect
			if e.Outcome != "" && !slices.Contains(outcomes, e.Outcome) {
				diags = append(diags, nameDiag(e.OutcomeRange, "Unknown outcome", "outcome", e.Outcome, outcomes))
			}
			rb, _ := cfg.Match(alert.Alert{Labels: st.Alert.Labels, Status: st.Alert.Status})
			if e.Runbook != "" && !slices.ContainsFunc(cfg.Runbooks, func(r *hcl.Runbook) bool { return r.Name == e.Runbook }) {
				diags = append(diags, nameDiag(e.RunbookRange, "Unknown runbook", "runbook", e.Runbook, runbookNames(cfg)))
			}
			var causes []string
			if rb != nil {
				for _, c := range rb.Causes {
					causes = append(causes, c.Name)
				}
			}
			if rb != nil {
				for i, c := range e.Causes {
					if !slices.Contains(causes, c) {
						diags = append(diags, nameDiag(hcl.ListElemRange(f.Bytes, e.CausesRange, i), "Unknown cause", "cause of runbook "+rb.Name, c, causes))
					}
				}
			}
			steps := slices.Clone(StepNames)
			for _, c := range causes {
				steps = append(steps, "repair:"+c)
			}
			for i, name := range e.Steps {
				if slices.Contains(StepNames, name) || (rb != nil && slices.Contains(steps, name)) || (rb == nil && strings.HasPrefix(name, "repair:")) {
					continue
				}
				diags = append(diags, nameDiag(hcl.ListElemRange(f.Bytes, e.StepsRange, i), "Unknown step", "step", name, steps))
			}
			if rb != nil {
				scripts := []string{"escalate"}
				for _, c := range rb.Causes {
					if len(c.Repair) > 0 {
						scripts = append(scripts, "repair:"+c.Name)
					}
				}
				for name, r := range st.World.ScriptRanges {
					if !slices.Contains(scripts, name) {
						diags = append(diags, nameDiag(r, "Unknown script", "script of runbook "+rb.Name, name, scripts))
					}
				}
			}
		}
	}
	return diags
}

func runbookNames(cfg *hcl.Config) []string {
	var out []string
	for _, rb := range cfg.Runbooks {
		out = append(out, rb.Name)
	}
	return out
}

func nameDiag(r hcl2.Range, summary, what, name string, known []string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("No %s is called %q.", what, name)
	if len(known) > 0 {
		detail = fmt.Sprintf("No %s is called %q (known: %s).", what, name, strings.Join(known, ", "))
	}
	if s := hcl.Suggest(name, known); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	return &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()}
}

// TestResult is what came of one test.
type TestResult struct {
	File, Name string
	Line       int
	Pass       bool
	// Failures describe each step whose expectation did not hold.
	Failures []StepFailure
	Results  []Result
	Duration time.Duration
}

// StepFailure is one expect block that did not hold.
type StepFailure struct {
	Step   int // 1-based; 0 for a test of one alert
	Pos    string
	Diff   []DiffLine
	Reason string
}

// DiffLine is one field of an expectation: Want and Got differ when !Same.
type DiffLine struct {
	Field     string
	Want, Got string
	Same      bool
}

// Report is the outcome of a suite.
type Report struct {
	Results        []TestResult
	Passed, Failed int
	Duration       time.Duration
	suite          *Suite
}

// Run runs every test of the suite, each in a fresh simulation.
func (s *Suite) Run(ctx context.Context) *Report {
	start := time.Now()
	rep := &Report{suite: s}
	for _, f := range s.Files {
		for _, t := range f.Tests {
			tr := runTest(ctx, f, t)
			rep.Results = append(rep.Results, tr)
			if tr.Pass {
				rep.Passed++
			} else {
				rep.Failed++
			}
		}
	}
	rep.Duration = time.Since(start)
	return rep
}

func runTest(ctx context.Context, f *SuiteFile, t *hcl.Test) TestResult {
	start := time.Now()
	tr := TestResult{File: f.Name, Name: t.Name, Line: t.DeclRange.Start.Line, Pass: true}
	sim := New(f.Config, Epoch)
	at := Epoch
	for i, st := range t.Steps {
		at = at.Add(st.After)
		a := alert.Alert{Labels: st.Alert.Labels, Annotations: st.Alert.Annotations, Status: st.Alert.Status}
		res, err := sim.Deliver(ctx, a, at, st.World)
		n := i + 1
		if len(t.Steps) == 1 {
			n = 0
		}
		if err != nil {
			tr.Pass = false
			tr.Failures = append(tr.Failures, StepFailure{Step: n, Pos: pos(st.DeclRange), Reason: "the alert does not decode: " + err.Error()})
			continue
		}
		tr.Results = append(tr.Results, res)
		if diff, ok := compare(st.Expect, res); !ok {
			tr.Pass = false
			reason := ""
			if res.Record != nil {
				reason = res.Record.Reason
			} else if res.Route.Reason != "" {
				reason = res.Route.Reason
			}
			tr.Failures = append(tr.Failures, StepFailure{Step: n, Pos: pos(st.Expect.DeclRange), Diff: diff, Reason: reason})
		}
	}
	tr.Duration = time.Since(start)
	return tr
}

func pos(r hcl2.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// compare checks a result against an expect block; the diff lists every
// field the block sets, outcome first.
func compare(e hcl.TestExpect, r Result) ([]DiffLine, bool) {
	ok := true
	add := func(field, want, got string) DiffLine {
		same := want == got
		ok = ok && same
		return DiffLine{Field: field, Want: want, Got: got, Same: same}
	}
	diff := []DiffLine{add("outcome", fmt.Sprintf("%q", e.Outcome), fmt.Sprintf("%q", r.Outcome))}
	if e.Runbook != "" {
		got := ""
		if r.Route.Runbook != nil {
			got = r.Route.Runbook.Name
		}
		diff = append(diff, add("runbook", fmt.Sprintf("%q", e.Runbook), fmt.Sprintf("%q", got)))
	}
	if e.HasCauses {
		diff = append(diff, add("causes", quoteList(e.Causes), quoteList(r.Causes)))
	}
	if e.HasSteps {
		diff = append(diff, add("steps", quoteList(e.Steps), quoteList(r.Steps)))
	}
	if e.Escalated != nil {
		diff = append(diff, add("escalated", fmt.Sprint(*e.Escalated), fmt.Sprint(r.Escalated)))
	}
	return diff, ok
}

// WriteText prints one line per test, a diff under each failure, and
// the count last: "N passed, N failed".
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, tr := range rep.Results {
		status := "ok  "
		if !tr.Pass {
			status = "FAIL"
		}
		fmt.Fprintf(&b, "%s %s:%d: %s\n", status, tr.File, tr.Line, tr.Name)
		for _, f := range tr.Failures {
			where := "expect"
			if f.Step > 0 {
				where = fmt.Sprintf("step %d: expect", f.Step)
			}
			fmt.Fprintf(&b, "     %s: %s (- expected, + actual)\n", f.Pos, where)
			for _, d := range f.Diff {
				if d.Same {
					fmt.Fprintf(&b, "       %-9s = %s\n", d.Field, d.Want)
					continue
				}
				fmt.Fprintf(&b, "     - %-9s = %s\n", d.Field, d.Want)
				fmt.Fprintf(&b, "     + %-9s = %s\n", d.Field, d.Got)
			}
			if f.Reason != "" {
				fmt.Fprintf(&b, "       reason: %s\n", f.Reason)
			}
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed\n", rep.Passed, rep.Failed)
	_, err := io.WriteString(w, b.String())
	return err
}

// JUnit XML (the schema CI systems read).
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Tests   int          `xml:"tests,attr"`
	Fails   int          `xml:"failures,attr"`
	Time    string       `xml:"time,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name  string      `xml:"name,attr"`
	Tests int         `xml:"tests,attr"`
	Fails int         `xml:"failures,attr"`
	Time  string      `xml:"time,attr"`
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr"`
	Line      int           `xml:"line,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func secs(d time.Duration) string { return fmt.Sprintf("%.6f", d.Seconds()) }

// WriteJUnit writes the report as JUnit XML, one testsuite per file.
func (rep *Report) WriteJUnit(w io.Writer) error {
	out := junitSuites{Tests: len(rep.Results), Fails: rep.Failed, Time: secs(rep.Duration)}
	idx := map[string]int{}
	for _, tr := range rep.Results {
		i, ok := idx[tr.File]
		if !ok {
			i = len(out.Suites)
			idx[tr.File] = i
			out.Suites = append(out.Suites, junitSuite{Name: tr.File})
		}
		s := &out.Suites[i]
		c := junitCase{Name: tr.Name, Classname: tr.File, File: tr.File, Line: tr.Line, Time: secs(tr.Duration)}
		s.Tests++
		if !tr.Pass {
			s.Fails++
			var b strings.Builder
			one := &Report{Results: []TestResult{tr}, Failed: 1}
			_ = one.WriteText(&b)
			msg := "expectation not met"
			if len(tr.Failures) > 0 {
				for _, d := range tr.Failures[0].Diff {
					if !d.Same {
						msg = fmt.Sprintf("%s: expected %s, got %s", d.Field, d.Want, d.Got)
						break
					}
				}
			}
			c.Failure = &junitFailure{Message: msg, Type: "AssertionError", Text: b.String()}
		}
		s.Cases = append(s.Cases, c)
	}
	for i := range out.Suites {
		var d time.Duration
		for _, tr := range rep.Results {
			if tr.File == out.Suites[i].Name {
				d += tr.Duration
			}
		}
		out.Suites[i].Time = secs(d)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// Mode paths of a runbook, as --coverage names them.
const (
	PathRepair          = "repair"
	PathRestart         = "restart"
	PathBudgetExhausted = "budget exhausted"
	PathEscalate        = "escalate"
	PathCircuitOpen     = "circuit open"
	PathLimited         = "limited"
	PathShadow          = "shadow"
	PathApproved        = "approved"
	PathSwitchover      = "switchover"
)

// Gap is a cause or mode path of a runbook that no test exercised.
type Gap struct {
	Pos, Runbook, Kind, Name string
}

// runbookPaths are the mode paths a runbook can take.
func runbookPaths(rb *hcl.Runbook) []string {
	switch {
	case rb.Switchover != nil:
		return []string{PathSwitchover, PathEscalate}
	case rb.Mode == hcl.ModeShadow:
		return []string{PathShadow}
	}
	var p []string
	if rb.Mode == hcl.ModeApprove {
		p = append(p, PathApproved)
	}
	if len(rb.Causes) > 0 {
		p = append(p, PathRepair)
	}
	p = append(p, PathRestart, PathBudgetExhausted, PathEscalate)
	if rb.Circuit != nil {
		p = append(p, PathCircuitOpen)
	}
	if rb.Concurrency != nil {
		p = append(p, PathLimited)
	}
	return p
}

// exercised lists the paths and causes a run went through.
func exercised(r Result) (paths, causes []string) {
	rec := r.Record
	if rec == nil {
		return nil, nil
	}
	if r.Escalated {
		paths = append(paths, PathEscalate)
	}
	switch rec.Outcome {
	case runbooks.OutcomeShadowed:
		return append(paths, PathShadow), rec.Causes
	case runbooks.OutcomeCircuitOpen:
		paths = append(paths, PathCircuitOpen)
	case runbooks.OutcomeLimited:
		paths = append(paths, PathLimited)
	}
	for _, s := range rec.Steps {
		switch {
		case strings.HasPrefix(s.Name, "repair:"):
			paths = append(paths, PathRepair)
		case s.Name == "restart":
			paths = append(paths, PathRestart)
		case s.Name == "budget" && !s.OK && strings.Contains(s.Detail, "exhausted"):
			paths = append(paths, PathBudgetExhausted)
		case s.Name == "approval" && s.OK:
			paths = append(paths, PathApproved)
		case s.Name == "switchover" && s.OK:
			paths = append(paths, PathSwitchover)
		}
	}
	return paths, rec.Causes
}

// Coverage lists every cause and mode path of every runbook under test
// that no test exercised, in runbook order.
func (rep *Report) Coverage() []Gap {
	type key struct{ file, runbook string }
	seen := map[key]map[string]bool{}
	mark := func(rb *hcl.Runbook, what string) {
		k := key{rb.DeclRange.Filename, rb.Name}
		if seen[k] == nil {
			seen[k] = map[string]bool{}
		}
		seen[k][what] = true
	}
	for _, f := range rep.suite.Files {
		for _, tr := range rep.Results {
			if tr.File != f.Name {
				continue
			}
			for _, r := range tr.Results {
				if r.Record == nil {
					continue
				}
				for _, rb := range f.Config.Runbooks {
					if rb.Name != r.Record.Runbook {
						continue
					}
					paths, causes := exercised(r)
					for _, p := range paths {
						mark(rb, "path "+p)
					}
					for _, c := range causes {
						mark(rb, "cause "+c)
					}
				}
			}
		}
	}
	var gaps []Gap
	done := map[key]bool{}
	for _, f := range rep.suite.Files {
		for _, rb := range f.Config.Runbooks {
			k := key{rb.DeclRange.Filename, rb.Name}
			if done[k] {
				continue
			}
			done[k] = true
			p := pos(rb.DeclRange)
			for _, c := range rb.Causes {
				if !seen[k]["cause "+c.Name] {
					gaps = append(gaps, Gap{Pos: pos(c.DeclRange), Runbook: rb.Name, Kind: "cause", Name: c.Name})
				}
			}
			for _, path := range runbookPaths(rb) {
				if !seen[k]["path "+path] {
					gaps = append(gaps, Gap{Pos: p, Runbook: rb.Name, Kind: "path", Name: path})
				}
			}
		}
	}
	return gaps
}

// WriteCoverage prints the gaps, one per line.
func WriteCoverage(w io.Writer, gaps []Gap) error {
	var b strings.Builder
	if len(gaps) == 0 {
		b.WriteString("coverage: every cause and mode path of every runbook under test was exercised\n")
	} else {
		fmt.Fprintf(&b, "coverage: %d not exercised by any test:\n", len(gaps))
		for _, g := range gaps {
			fmt.Fprintf(&b, "  %s: runbook %s: %s %q\n", g.Pos, g.Runbook, g.Kind, g.Name)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
