package hcl

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Runbook tests (`medic test`, docs/design.md §9) are HCL files ending in
// TestSuffix. This file decodes them; package simulate runs them.

// TestSuffix ends the name of a runbook test file.
const TestSuffix = ".test.hcl"

// IsTestFile reports whether name is a runbook test file, which the
// configuration loader skips.
func IsTestFile(name string) bool { return strings.HasSuffix(name, TestSuffix) }

// Values of the test language, offered as did-you-mean candidates.
var (
	ProbeResults   = []string{"pass", "fail"}
	RestartResults = []string{"ok", "fail"}
	AlertStatuses  = []string{"firing", "resolved"}
	// Approvals: what the simulated operator decides on an approve-mode
	// run ("none": nobody decides, the run expires).
	Approvals = []string{"approve", "reject", "none"}
	// UsageNames are the keys of world.usage.
	UsageNames = []string{"memory", "cpu", "disk", "host_memory", "host_cpu"}
)

var (
	testRootSchema = &hcl2.BodySchema{
		Attributes: []hcl2.AttributeSchema{{Name: "config"}},
		Blocks: []hcl2.BlockHeaderSchema{
			{Type: "test", LabelNames: []string{"name"}},
			// Fixture agents: added to the configuration under test, for
			// runbooks (like the library's) that ship without agents.
			{Type: "agent", LabelNames: []string{"name"}},
		},
	}
	testSchema = &hcl2.BodySchema{Blocks: []hcl2.BlockHeaderSchema{
		{Type: "alert"}, {Type: "world"}, {Type: "expect"}, {Type: "sequence"},
	}}
	testAlertSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{
		{Name: "labels", Required: true}, {Name: "annotations"}, {Name: "status"},
	}}
	testWorldSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{
		{Name: "alive"}, {Name: "probe"}, {Name: "usage"}, {Name: "scripts"}, {Name: "restart"},
		{Name: "restart_duration"}, {Name: "approval"}, {Name: "paused"}, {Name: "switchover"}, {Name: "escalation"},
	}}
	testExpectSchema = &hcl2.BodySchema{Attributes: []hcl2.AttributeSchema{
		{Name: "outcome", Required: true}, {Name: "causes"}, {Name: "steps"}, {Name: "escalated"}, {Name: "runbook"},
	}}
	testSequenceSchema = &hcl2.BodySchema{Blocks: []hcl2.BlockHeaderSchema{{Type: "step"}}}
	testStepSchema     = &hcl2.BodySchema{
		Attributes: []hcl2.AttributeSchema{{Name: "after"}},
		Blocks:     []hcl2.BlockHeaderSchema{{Type: "alert"}, {Type: "world"}, {Type: "expect"}},
	}
)

// TestFile is one decoded *.test.hcl file.
type TestFile struct {
	Name string
	// Config are the files and directories of the configuration under
	// test, relative paths resolved against the file's directory; default
	// the file's directory.
	Config      []string
	ConfigRange *hcl2.Range
	// Fixtures, when the file declares agents, is the file with everything
	// but its agent blocks blanked out (positions kept), to be loaded with
	// the configuration.
	Fixtures *Source
	Tests    []*Test
	Bytes    []byte
}

// Test is one `test "NAME"` block: either one alert (Alert, World,
// Expect) or a sequence of steps.
type Test struct {
	Name      string
	DeclRange hcl2.Range
	Steps     []*TestStep
}

// TestStep is one alert of a test and what must come of it. After is
// counted from the previous step's alert, in virtual time.
type TestStep struct {
	After     time.Duration
	Alert     TestAlert
	World     TestWorld
	Expect    TestExpect
	DeclRange hcl2.Range
}

// TestAlert is an `alert {}` block.
type TestAlert struct {
	Labels      map[string]string
	Annotations map[string]string
	Status      string // "firing" (default) or "resolved"
	DeclRange   hcl2.Range
}

// TestWorld is a `world {}` block: the simulated agent and scripts.
type TestWorld struct {
	Alive bool
	// Probe holds successive probe results, the last repeating; nil means
	// failing until the agent is restarted, passing after.
	Probe           []bool
	Usage           Usage
	Scripts         map[string]int // exit codes by step name
	ScriptRanges    map[string]hcl2.Range
	RestartFails    bool
	RestartDuration time.Duration // virtual time a restart takes
	Approval        string        // Approvals; default "approve"
	Paused          bool
	SwitchoverFails bool
	EscalationFails bool
}

// DefaultTestWorld is the world of a test that has no world block.
func DefaultTestWorld() TestWorld { return TestWorld{Alive: true, Approval: "approve"} }

// TestExpect is an `expect {}` block. Optional fields are checked only
// when set.
type TestExpect struct {
	Outcome      string
	OutcomeRange hcl2.Range
	Causes       []string
	HasCauses    bool
	CausesRange  hcl2.Range
	Steps        []string
	HasSteps     bool
	StepsRange   hcl2.Range
	Escalated    *bool
	Runbook      string
	RunbookRange hcl2.Range
	DeclRange    hcl2.Range
}

// Suggest returns the candidate closest to name when it is a likely typo
// or abbreviation, else "" (the "Did you mean" of every diagnostic).
func Suggest(name string, candidates []string) string { return suggest(name, candidates) }

// LoadTestFiles reads the test files named by paths: files as given, and
// the *.test.hcl files of directories (recursively), sorted by name.
func LoadTestFiles(paths ...string) ([]*TestFile, hcl2.Diagnostics) {
	var (
		files []*TestFile
		diags hcl2.Diagnostics
		seen  = map[string]bool{}
	)
	for _, p := range paths {
		names, err := testFileNames(p)
		if err != nil {
			diags = append(diags, fileDiag(p, "Cannot read tests", err.Error()))
			continue
		}
		for _, n := range names {
			abs, _ := filepath.Abs(n)
			if seen[abs] {
				continue
			}
			seen[abs] = true
			b, err := os.ReadFile(n)
			if err != nil {
				diags = append(diags, fileDiag(n, "Cannot read tests", err.Error()))
				continue
			}
			f, d := ParseTestFile(n, b)
			diags = append(diags, d...)
			if f != nil {
				files = append(files, f)
			}
		}
	}
	return files, diags
}

func testFileNames(p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	var out []string
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && IsTestFile(d.Name()) {
			out = append(out, path)
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("no *%s files under %s", TestSuffix, p)
	}
	sort.Strings(out)
	return out, err
}

// ParseTestFile decodes one test file from memory.
func ParseTestFile(name string, src []byte) (*TestFile, hcl2.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, name, hcl2.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	content, d := file.Body.Content(testRootSchema)
	diags = append(diags, d...)
	tf := &TestFile{Name: name, Bytes: src, Config: []string{filepath.Dir(name)}}
	if attr := content.Attributes["config"]; attr != nil {
		dirs, d := decodeConfigPaths(attr)
		diags = append(diags, d...)
		if len(dirs) > 0 {
			tf.Config = tf.Config[:0]
			for _, dir := range dirs {
				if !filepath.IsAbs(dir) {
					dir = filepath.Join(filepath.Dir(name), dir)
				}
				tf.Config = append(tf.Config, dir)
			}
		}
		tf.ConfigRange = attr.Expr.Range().Ptr()
	}
	names := map[string]hcl2.Range{}
	for _, block := range content.Blocks {
		if block.Type != "test" {
			continue
		}
		if first, dup := names[block.Labels[0]]; dup {
			diags = append(diags, &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: fmt.Sprintf("Duplicate test %q", block.Labels[0]),
				Detail: fmt.Sprintf("The test %q is first defined at %s.", block.Labels[0], posString(first)), Subject: block.LabelRanges[0].Ptr()})
			continue
		}
		names[block.Labels[0]] = block.DefRange
		t, d := decodeTest(block)
		diags = append(diags, d...)
		if t != nil {
			tf.Tests = append(tf.Tests, t)
		}
	}
	tf.Fixtures = fixtureSource(name, src, file)
	if len(tf.Tests) == 0 && !diags.HasErrors() {
		diags = append(diags, fileDiag(name, "No tests", fmt.Sprintf("%s holds no test blocks.", name)))
	}
	return tf, diags
}

// fixtureSource is src with every byte outside its agent blocks blanked
// (newlines kept), so that the agents load with their own positions.
func fixtureSource(name string, src []byte, file *hcl2.File) *Source {
	body, ok := file.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	out := make([]byte, len(src))
	for i, c := range src {
		if c == '\n' {
			out[i] = '\n'
		} else {
			out[i] = ' '
		}
	}
	any := false
	for _, b := range body.Blocks {
		if b.Type != "agent" {
			continue
		}
		r := b.Range()
		copy(out[r.Start.Byte:r.End.Byte], src[r.Start.Byte:r.End.Byte])
		any = true
	}
	if !any {
		return nil
	}
	return &Source{Name: name, Bytes: out}
}

func decodeConfigPaths(attr *hcl2.Attribute) ([]string, hcl2.Diagnostics) {
	if s, ok := literalString(attr.Expr); ok {
		return []string{s}, nil
	}
	val, diags := attr.Expr.Value(staticContext)
	if diags.HasErrors() {
		return nil, diags
	}
	if val.Type() == cty.String {
		return []string{val.AsString()}, nil
	}
	return decodeStringList(attr)
}

func decodeTest(block *hcl2.Block) (*Test, hcl2.Diagnostics) {
	content, diags := block.Body.Content(testSchema)
	t := &Test{Name: block.Labels[0], DeclRange: block.DefRange}
	var (
		alert  *TestAlert
		world  = DefaultTestWorld()
		expect *TestExpect
	)
	if b := singleBlock(&diags, content.Blocks, "alert"); b != nil {
		a, d := decodeTestAlert(b)
		diags = append(diags, d...)
		alert = &a
	}
	if b := singleBlock(&diags, content.Blocks, "world"); b != nil {
		w, d := decodeTestWorld(b)
		diags = append(diags, d...)
		world = w
	}
	if b := singleBlock(&diags, content.Blocks, "expect"); b != nil {
		e, d := decodeTestExpect(b)
		diags = append(diags, d...)
		expect = &e
	}
	seq := singleBlock(&diags, content.Blocks, "sequence")
	if seq == nil {
		switch {
		case alert == nil:
			diags = append(diags, testDiag(block.DefRange, "Missing alert block", fmt.Sprintf("Test %q needs an alert block (or a sequence of steps).", t.Name)))
		case expect == nil:
			diags = append(diags, testDiag(block.DefRange, "Missing expect block", fmt.Sprintf("Test %q needs an expect block: what must come of the alert.", t.Name)))
		default:
			t.Steps = []*TestStep{{Alert: *alert, World: world, Expect: *expect, DeclRange: block.DefRange}}
		}
		return t, diags
	}
	if expect != nil {
		diags = append(diags, testDiag(expect.DeclRange, "Unexpected expect block",
			"In a test with a sequence, each step has its own expect block."))
	}
	sc, d := seq.Body.Content(testSequenceSchema)
	diags = append(diags, d...)
	for _, sb := range sc.Blocks {
		st, d := decodeTestStep(sb, alert, world)
		diags = append(diags, d...)
		if st != nil {
			t.Steps = append(t.Steps, st)
		}
	}
	if len(sc.Blocks) == 0 {
		diags = append(diags, testDiag(seq.DefRange, "Empty sequence", "A sequence needs at least one step block."))
	}
	return t, diags
}

func decodeTestStep(block *hcl2.Block, alert *TestAlert, world TestWorld) (*TestStep, hcl2.Diagnostics) {
	content, diags := block.Body.Content(testStepSchema)
	st := &TestStep{World: world, DeclRange: block.DefRange}
	if attr := content.Attributes["after"]; attr != nil {
		s, d := decodeString(attr)
		diags = append(diags, d...)
		if !d.HasErrors() && s != "0" && s != "0s" {
			st.After, d = decodeDuration(attr)
			diags = append(diags, d...)
		}
	}
	if b := singleBlock(&diags, content.Blocks, "alert"); b != nil {
		a, d := decodeTestAlert(b)
		diags = append(diags, d...)
		st.Alert = a
	} else if alert != nil {
		st.Alert = *alert
	} else {
		diags = append(diags, testDiag(block.DefRange, "Missing alert block", "This step has no alert block, and its test none to share."))
	}
	if b := singleBlock(&diags, content.Blocks, "world"); b != nil {
		w, d := decodeTestWorld(b)
		diags = append(diags, d...)
		st.World = w
	}
	if b := singleBlock(&diags, content.Blocks, "expect"); b != nil {
		e, d := decodeTestExpect(b)
		diags = append(diags, d...)
		st.Expect = e
	} else {
		diags = append(diags, testDiag(block.DefRange, "Missing expect block", "Each step needs an expect block."))
	}
	return st, diags
}

func testDiag(r hcl2.Range, summary, detail string) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()}
}

// oneOf decodes a string attribute that must be one of values.
func oneOf(attr *hcl2.Attribute, values []string) (string, hcl2.Diagnostics) {
	s, diags := decodeString(attr)
	if diags.HasErrors() {
		return "", diags
	}
	for _, v := range values {
		if s == v {
			return s, diags
		}
	}
	return "", append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", unknownValue(attr.Name, s, values)))
}

func unknownValue(what, s string, values []string) string {
	detail := fmt.Sprintf("%s is one of %s, not %q.", what, quotedList(values), s)
	if sug := suggest(s, values); sug != "" {
		detail += fmt.Sprintf(" Did you mean %q?", sug)
	}
	return detail
}

func quotedList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = fmt.Sprintf("%q", v)
	}
	return englishList(q)
}

func decodeTestAlert(block *hcl2.Block) (TestAlert, hcl2.Diagnostics) {
	content, diags := block.Body.Content(testAlertSchema)
	a := TestAlert{Status: "firing", DeclRange: block.DefRange}
	if attr := content.Attributes["labels"]; attr != nil {
		m, d := decodeStringMap(attr)
		diags = append(diags, d...)
		a.Labels = m
	}
	if attr := content.Attributes["annotations"]; attr != nil {
		m, d := decodeStringMap(attr)
		diags = append(diags, d...)
		a.Annotations = m
	}
	if attr := content.Attributes["status"]; attr != nil {
		s, d := oneOf(attr, AlertStatuses)
		diags = append(diags, d...)
		if s != "" {
			a.Status = s
		}
	}
	return a, diags
}

func decodeTestWorld(block *hcl2.Block) (TestWorld, hcl2.Diagnostics) {
	content, diags := block.Body.Content(testWorldSchema)
	w := DefaultTestWorld()
	attrs := content.Attributes
	if attr := attrs["alive"]; attr != nil {
		b, d := decodeBool(attr)
		diags = append(diags, d...)
		w.Alive = b
	}
	if attr := attrs["paused"]; attr != nil {
		b, d := decodeBool(attr)
		diags = append(diags, d...)
		w.Paused = b
	}
	if attr := attrs["probe"]; attr != nil {
		l, d := decodeStringList(attr)
		diags = append(diags, d...)
		elems, _ := hcl2.ExprList(attr.Expr)
		w.Probe = []bool{}
		for i, s := range l {
			switch s {
			case "pass":
				w.Probe = append(w.Probe, true)
			case "fail":
				w.Probe = append(w.Probe, false)
			default:
				subject := attr.Expr.Range().Ptr()
				if len(elems) == len(l) {
					subject = elems[i].Range().Ptr()
				}
				diags = append(diags, &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: "Invalid probe value",
					Detail: unknownValue("A probe result", s, ProbeResults), Subject: subject, Context: attr.Range.Ptr()})
			}
		}
		if len(l) == 0 && !d.HasErrors() {
			diags = append(diags, attrDiag(attr, "Empty probe list", `probe lists successive results, e.g. ["fail", "pass"]; leave it out for "fails until restarted".`))
		}
	}
	if attr := attrs["usage"]; attr != nil {
		m, d := decodeNumberMap(attr)
		diags = append(diags, d...)
		for k, v := range m {
			switch k {
			case "memory":
				w.Usage.Memory = v
			case "cpu":
				w.Usage.CPU = v
			case "disk":
				w.Usage.Disk = v
			case "host_memory":
				w.Usage.HostMemory = v
			case "host_cpu":
				w.Usage.HostCPU = v
			default:
				diags = append(diags, &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: "Unknown usage ratio",
					Detail: unknownValue("A usage ratio", k, UsageNames), Subject: mapKeyRange(attr.Expr, k, attr.Expr.Range().Ptr())})
			}
		}
	}
	if attr := attrs["scripts"]; attr != nil {
		m, d := decodeNumberMap(attr)
		diags = append(diags, d...)
		w.Scripts = map[string]int{}
		w.ScriptRanges = map[string]hcl2.Range{}
		for k, v := range m {
			w.Scripts[k] = int(v)
			w.ScriptRanges[k] = *mapKeyRange(attr.Expr, k, attr.Expr.Range().Ptr())
		}
	}
	if attr := attrs["restart"]; attr != nil {
		s, d := oneOf(attr, RestartResults)
		diags = append(diags, d...)
		w.RestartFails = s == "fail"
	}
	if attr := attrs["switchover"]; attr != nil {
		s, d := oneOf(attr, RestartResults)
		diags = append(diags, d...)
		w.SwitchoverFails = s == "fail"
	}
	if attr := attrs["escalation"]; attr != nil {
		s, d := oneOf(attr, RestartResults)
		diags = append(diags, d...)
		w.EscalationFails = s == "fail"
	}
	if attr := attrs["approval"]; attr != nil {
		s, d := oneOf(attr, Approvals)
		diags = append(diags, d...)
		if s != "" {
			w.Approval = s
		}
	}
	if attr := attrs["restart_duration"]; attr != nil {
		dur, d := decodeDuration(attr)
		diags = append(diags, d...)
		w.RestartDuration = dur
	}
	return w, diags
}

// decodeNumberMap decodes { name = number, … }.
func decodeNumberMap(attr *hcl2.Attribute) (map[string]float64, hcl2.Diagnostics) {
	val, diags := staticValue(attr, cty.Map(cty.Number))
	if diags.HasErrors() {
		return nil, diags
	}
	out := make(map[string]float64, val.LengthInt())
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if v.IsNull() {
			return nil, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("The value of %s[%q] must not be null.", attr.Name, k.AsString())))
		}
		f, _ := v.AsBigFloat().Float64()
		out[k.AsString()] = f
	}
	return out, diags
}

func decodeTestExpect(block *hcl2.Block) (TestExpect, hcl2.Diagnostics) {
	content, diags := block.Body.Content(testExpectSchema)
	e := TestExpect{DeclRange: block.DefRange}
	attrs := content.Attributes
	if attr := attrs["outcome"]; attr != nil {
		s, d := decodeString(attr)
		diags = append(diags, d...)
		e.Outcome, e.OutcomeRange = s, attr.Expr.Range()
	}
	if attr := attrs["runbook"]; attr != nil {
		s, d := decodeString(attr)
		diags = append(diags, d...)
		e.Runbook, e.RunbookRange = s, attr.Expr.Range()
	}
	if attr := attrs["causes"]; attr != nil {
		l, d := decodeStringList(attr)
		diags = append(diags, d...)
		e.Causes, e.HasCauses, e.CausesRange = l, true, attr.Expr.Range()
	}
	if attr := attrs["steps"]; attr != nil {
		l, d := decodeStringList(attr)
		diags = append(diags, d...)
		e.Steps, e.HasSteps, e.StepsRange = l, true, attr.Expr.Range()
	}
	if attr := attrs["escalated"]; attr != nil {
		b, d := decodeBool(attr)
		diags = append(diags, d...)
		e.Escalated = &b
	}
	return e, diags
}

// ListElemRange is where the i-th element of a list attribute's value is
// written, else the whole value's range.
func ListElemRange(src []byte, r hcl2.Range, i int) hcl2.Range {
	expr, diags := hclsyntax.ParseExpression(src[r.Start.Byte:r.End.Byte], r.Filename, r.Start)
	if diags.HasErrors() {
		return r
	}
	elems, d := hcl2.ExprList(expr)
	if d.HasErrors() || i >= len(elems) {
		return r
	}
	return elems[i].Range()
}
