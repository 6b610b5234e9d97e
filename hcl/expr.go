package hcl

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/medicops/medic/alert"
)

// Variable roots an expression may use. Which of them a given attribute sees
// is decided by the attribute (see scope*).
const (
	rootAlert  = "alert"
	rootAgent  = "agent"
	rootUsage  = "usage"
	rootDevice = "device"
)

// functions is the table every expression sees. All of them are pure: none
// reads a file, the network, the clock or the environment, so a condition
// means the same at load time and at 3 a.m. Functions whose output size is
// not bounded by their input (range, chunklist, setproduct, indent) are left
// out, and format's widths are capped, so that a config cannot make the
// loader allocate without limit.
var functions = map[string]function.Function{
	// numbers
	"abs":      stdlib.AbsoluteFunc,
	"ceil":     stdlib.CeilFunc,
	"floor":    stdlib.FloorFunc,
	"log":      stdlib.LogFunc,
	"max":      stdlib.MaxFunc,
	"min":      stdlib.MinFunc,
	"parseint": stdlib.ParseIntFunc,
	"pow":      stdlib.PowFunc,
	"signum":   stdlib.SignumFunc,
	"int":      stdlib.IntFunc,
	// strings
	"chomp":         stdlib.ChompFunc,
	"format":        boundedWidths(stdlib.FormatFunc),
	"formatlist":    boundedWidths(stdlib.FormatListFunc),
	"join":          stdlib.JoinFunc,
	"lower":         stdlib.LowerFunc,
	"upper":         stdlib.UpperFunc,
	"replace":       stdlib.ReplaceFunc,
	"split":         stdlib.SplitFunc,
	"strlen":        stdlib.StrlenFunc,
	"strrev":        stdlib.ReverseFunc,
	"substr":        stdlib.SubstrFunc,
	"title":         stdlib.TitleFunc,
	"trim":          stdlib.TrimFunc,
	"trimprefix":    stdlib.TrimPrefixFunc,
	"trimsuffix":    stdlib.TrimSuffixFunc,
	"trimspace":     stdlib.TrimSpaceFunc,
	"regex":         stdlib.RegexFunc,
	"regexall":      stdlib.RegexAllFunc,
	"regex_replace": stdlib.RegexReplaceFunc,
	// collections
	"coalesce":     stdlib.CoalesceFunc,
	"coalescelist": stdlib.CoalesceListFunc,
	"compact":      stdlib.CompactFunc,
	"concat":       stdlib.ConcatFunc,
	"contains":     stdlib.ContainsFunc,
	"distinct":     stdlib.DistinctFunc,
	"element":      stdlib.ElementFunc,
	"flatten":      stdlib.FlattenFunc,
	"keys":         stdlib.KeysFunc,
	"length":       stdlib.LengthFunc,
	"lookup":       stdlib.LookupFunc,
	"merge":        stdlib.MergeFunc,
	"reverse":      stdlib.ReverseListFunc,
	"slice":        stdlib.SliceFunc,
	"sort":         stdlib.SortFunc,
	"values":       stdlib.ValuesFunc,
	"zipmap":       stdlib.ZipmapFunc,
	// encoding and conversion
	"jsonencode": stdlib.JSONEncodeFunc,
	"jsondecode": stdlib.JSONDecodeFunc,
	"tostring":   stdlib.MakeToFunc(cty.String),
	"tonumber":   stdlib.MakeToFunc(cty.Number),
	"tobool":     stdlib.MakeToFunc(cty.Bool),
	// error handling
	"can": tryfunc.CanFunc,
	"try": tryfunc.TryFunc,
}

// FunctionNames lists the functions expressions may call, sorted.
func FunctionNames() []string {
	names := make([]string, 0, len(functions))
	for n := range functions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Object types of the three roots. They are derived from the value builders
// so that load-time checking and run-time evaluation cannot disagree.
var (
	alertType = alertValue(alert.Alert{}).Type()
	agentType = agentValue(nil).Type()
	usageType = usageValue(Usage{}).Type()
)

func stringMap(m map[string]string) cty.Value {
	if len(m) == 0 {
		return cty.MapValEmpty(cty.String)
	}
	vals := make(map[string]cty.Value, len(m))
	for k, v := range m {
		vals[k] = cty.StringVal(v)
	}
	return cty.MapVal(vals)
}

func stringList(l []string) cty.Value {
	if len(l) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vals := make([]cty.Value, len(l))
	for i, s := range l {
		vals[i] = cty.StringVal(s)
	}
	return cty.ListVal(vals)
}

func alertValue(a alert.Alert) cty.Value {
	startsAt := ""
	if !a.StartsAt.IsZero() {
		startsAt = a.StartsAt.UTC().Format(time.RFC3339)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"labels":      stringMap(a.Labels),
		"annotations": stringMap(a.Annotations),
		"status":      cty.StringVal(a.Status),
		"starts_at":   cty.StringVal(startsAt),
		"fingerprint": cty.StringVal(a.Fingerprint),
	})
}

// agentValue is what expressions see as `agent`. A nil agent (the alert
// names an agent this config does not know) still has the default
// thresholds so that conditions keep their meaning.
func agentValue(a *Agent) cty.Value {
	if a == nil {
		a = &Agent{Thresholds: DefaultThresholds()}
	}
	var hbTimeout float64
	if a.Heartbeat != nil {
		hbTimeout = a.Heartbeat.Timeout.Seconds()
	}
	probe := ""
	if a.Probe != nil {
		probe = a.Probe.Kind
	}
	return cty.ObjectVal(map[string]cty.Value{
		"name":    cty.StringVal(a.Name),
		"node":    cty.StringVal(a.Node),
		"workdir": cty.StringVal(a.Workdir),
		"pidfile": cty.StringVal(a.Pidfile),
		"command": stringList(a.Command),
		"env":     stringMap(a.Env),
		"thresholds": cty.ObjectVal(map[string]cty.Value{
			"memory": cty.NumberFloatVal(a.Thresholds.Memory),
			"cpu":    cty.NumberFloatVal(a.Thresholds.CPU),
			"disk":   cty.NumberFloatVal(a.Thresholds.Disk),
		}),
		"supervised":        cty.BoolVal(a.Supervised()),
		"watchdog":          cty.BoolVal(a.Watchdog),
		"probe":             cty.StringVal(probe),
		"heartbeat_timeout": cty.NumberFloatVal(hbTimeout),
	})
}

// agentCtyValue is agentValue, kept with the agent when it was loaded
// rather than built by hand (a hand-built one may still change).
func agentCtyValue(a *Agent) cty.Value {
	if a == nil || a.value == nil {
		return agentValue(a)
	}
	a.value.once.Do(func() { a.value.v = agentValue(a) })
	return a.value.v
}

func usageValue(u Usage) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"memory": cty.NumberFloatVal(u.Memory),
		"cpu":    cty.NumberFloatVal(u.CPU),
		"disk":   cty.NumberFloatVal(u.Disk),
		"host": cty.ObjectVal(map[string]cty.Value{
			"memory": cty.NumberFloatVal(u.HostMemory),
			"cpu":    cty.NumberFloatVal(u.HostCPU),
		}),
	})
}

// DefaultThresholds returns the thresholds of docs/design.md §1.1.
func DefaultThresholds() Thresholds {
	return Thresholds{Memory: DefaultMemoryThreshold, CPU: DefaultCPUThreshold, Disk: DefaultDiskThreshold}
}

// scope is the set of roots one kind of expression may refer to, with their
// types.
type scope struct {
	what  string // "a condition", for messages
	roots map[string]cty.Type
	// typed is an EvalContext holding unknown values of the root types, used
	// to type-check an expression at load time.
	typed *hcl2.EvalContext
}

func newScope(what string, roots map[string]cty.Type) *scope {
	vars := make(map[string]cty.Value, len(roots))
	for n, t := range roots {
		vars[n] = cty.UnknownVal(t)
	}
	return &scope{what: what, roots: roots, typed: &hcl2.EvalContext{Variables: vars, Functions: functions}}
}

var (
	scopeCondition = newScope("A condition", map[string]cty.Type{rootAlert: alertType, rootAgent: agentType, rootUsage: usageType})
	scopeAlert     = newScope("This expression", map[string]cty.Type{rootAlert: alertType})
	scopeDevice    = newScope("A device_url", map[string]cty.Type{rootDevice: cty.String})
)

func (s *scope) rootNames() []string {
	names := make([]string, 0, len(s.roots))
	for n := range s.roots {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkExpr catches, at load time, references to unknown roots and unknown
// attributes of the known roots, and then type-checks the expression against
// unknown values of the root types. want, when not cty.NilType, is the type
// the result must convert to.
func (s *scope) checkExpr(expr hcl2.Expression, want cty.Type, attrName string) hcl2.Diagnostics {
	var diags hcl2.Diagnostics
	for _, tr := range expr.Variables() {
		diags = append(diags, s.checkTraversal(tr)...)
	}
	if diags.HasErrors() {
		return diags
	}
	val, vdiags := expr.Value(s.typed)
	diags = append(diags, fixSubjects(vdiags, expr.Range())...)
	diags = append(diags, fixSubjects(s.checkHidden(expr, vdiags), expr.Range())...)
	if diags.HasErrors() || want == cty.NilType {
		return diags
	}
	if val.Type() == cty.DynamicPseudoType {
		return diags
	}
	// A string converts to bool only when it happens to hold "true" or
	// "false": `when = alert.labels.x` would load and then fail at
	// diagnosis time, so a condition must be a bool already.
	if want == cty.Bool && val.Type() == cty.String {
		return append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  fmt.Sprintf("Invalid %s value", attrName),
			Detail:   fmt.Sprintf("The value of %s must be a bool; this expression is a string. Compare it instead, e.g. alert.labels.x == \"true\".", attrName),
			Subject:  expr.Range().Ptr(),
		})
	}
	if _, err := convertTo(val, want); err != nil {
		diags = append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  fmt.Sprintf("Invalid %s value", attrName),
			Detail:   fmt.Sprintf("The value of %s must be a %s; this expression is a %s.", attrName, want.FriendlyName(), val.Type().FriendlyName()),
			Subject:  expr.Range().Ptr(),
		})
	}
	return diags
}

// checkTraversal walks one variable reference through the root types.
func (s *scope) checkTraversal(tr hcl2.Traversal) hcl2.Diagnostics {
	root := tr.RootName()
	ty, ok := s.roots[root]
	if !ok {
		detail := fmt.Sprintf("There is no variable named %q.", root)
		if sug := suggest(root, s.rootNames()); sug != "" {
			detail += fmt.Sprintf(" Did you mean %q?", sug)
		}
		detail += fmt.Sprintf(" %s can refer to %s.", s.what, englishList(s.rootNames()))
		return hcl2.Diagnostics{{
			Severity: hcl2.DiagError,
			Summary:  "Unknown variable",
			Detail:   detail,
			Subject:  tr[0].SourceRange().Ptr(),
		}}
	}
	path := root
	for _, step := range tr[1:] {
		if !ty.IsObjectType() {
			// Maps, lists and scalars are checked by evaluation.
			return nil
		}
		var name string
		switch st := step.(type) {
		case hcl2.TraverseAttr:
			name = st.Name
		case hcl2.TraverseIndex:
			if !st.Key.IsKnown() || st.Key.IsNull() || st.Key.Type() != cty.String {
				return nil
			}
			name = st.Key.AsString()
		default:
			return nil
		}
		if !ty.HasAttribute(name) {
			attrs := make([]string, 0, len(ty.AttributeTypes()))
			for n := range ty.AttributeTypes() {
				attrs = append(attrs, n)
			}
			sort.Strings(attrs)
			detail := fmt.Sprintf("%s has no attribute %q.", path, name)
			if sug := suggest(name, attrs); sug != "" {
				detail += fmt.Sprintf(" Did you mean %q?", sug)
			}
			detail += fmt.Sprintf(" It has %s.", englishList(attrs))
			return hcl2.Diagnostics{{
				Severity: hcl2.DiagError,
				Summary:  "Unknown attribute",
				Detail:   detail,
				Subject:  nameRange(step, name).Ptr(),
			}}
		}
		ty = ty.AttributeType(name)
		path += "." + name
	}
	return nil
}

func englishList(names []string) string {
	switch len(names) {
	case 0:
		return "nothing"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// EvalContext builds the context conditions are evaluated in: `alert`,
// `agent` (may be nil) and `usage`, plus the side-effect-free functions.
func EvalContext(alert alert.Alert, agent *Agent, usage Usage) *hcl2.EvalContext {
	return &hcl2.EvalContext{
		Variables: map[string]cty.Value{
			rootAlert: alertValue(alert),
			rootAgent: agentCtyValue(agent),
			rootUsage: usageValue(usage),
		},
		Functions: functions,
	}
}

// alertContext is the context of expressions that only see the alert.
func alertContext(alert alert.Alert) *hcl2.EvalContext {
	return &hcl2.EvalContext{
		Variables: map[string]cty.Value{rootAlert: alertValue(alert)},
		Functions: functions,
	}
}

// nameRange narrows the range of a `.name` step to the name itself, so
// that the marker sits under the misspelt word rather than the dot.
func nameRange(step hcl2.Traverser, name string) hcl2.Range {
	r := step.SourceRange()
	if _, ok := step.(hcl2.TraverseAttr); ok && r.End.Byte-r.Start.Byte == len(name)+1 {
		r.Start.Byte++
		r.Start.Column++
	}
	return r
}

// checkHidden evaluates on their own the operands that evaluation with
// unknown values never reaches: the right side of && and || (which
// short-circuit on an unknown left side and drop its diagnostics) and both
// branches of a conditional. Without this, `usage.cpu > 0.8 && lenght(x) > 1`
// would load and fail at run time. Operands inside a for expression are
// skipped, since they refer to the for's own symbols.
func (s *scope) checkHidden(expr hcl2.Expression, seen hcl2.Diagnostics) hcl2.Diagnostics {
	root, ok := expr.(hclsyntax.Expression)
	if !ok {
		return nil
	}
	w := &hiddenWalker{scope: s, seen: map[string]bool{}}
	for _, d := range seen {
		w.seen[diagKey(d)] = true
	}
	hclsyntax.Walk(root, w)
	return w.diags
}

type hiddenWalker struct {
	scope    *scope
	forDepth int
	seen     map[string]bool
	diags    hcl2.Diagnostics
}

func (w *hiddenWalker) Enter(node hclsyntax.Node) hcl2.Diagnostics {
	switch n := node.(type) {
	case *hclsyntax.ForExpr:
		w.forDepth++
	case *hclsyntax.BinaryOpExpr:
		if n.Op == hclsyntax.OpLogicalAnd || n.Op == hclsyntax.OpLogicalOr {
			w.eval(n.LHS)
			w.eval(n.RHS)
		}
	case *hclsyntax.ConditionalExpr:
		w.eval(n.TrueResult)
		w.eval(n.FalseResult)
	}
	return nil
}

func (w *hiddenWalker) Exit(node hclsyntax.Node) hcl2.Diagnostics {
	if _, ok := node.(*hclsyntax.ForExpr); ok {
		w.forDepth--
	}
	return nil
}

func (w *hiddenWalker) eval(e hclsyntax.Expression) {
	if w.forDepth > 0 {
		return
	}
	_, diags := e.Value(w.scope.typed)
	for _, d := range diags {
		if k := diagKey(d); !w.seen[k] {
			w.seen[k] = true
			w.diags = append(w.diags, d)
		}
	}
}

func diagKey(d *hcl2.Diagnostic) string {
	if d.Subject == nil {
		return d.Summary
	}
	return d.Subject.String() + d.Summary
}

// fixSubjects gives diagnostics that HCL left without a position (some
// function-call errors) the range of the expression they came from, so that
// every diagnostic prints as file:line:col.
func fixSubjects(diags hcl2.Diagnostics, rng hcl2.Range) hcl2.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil || d.Subject.Filename == "" {
			d.Subject = rng.Ptr()
		}
	}
	return diags
}

// maxFormatWidth caps the width and precision of format verbs: "%999999999s"
// would otherwise allocate a gigabyte when the file loads.
const maxFormatWidth = 1024

var formatWidth = regexp.MustCompile(`%[-+# 0]*(\d*)(?:\.(\d*))?`)

// boundedWidths wraps format or formatlist, whose first argument is the
// format string, to refuse widths and precisions over maxFormatWidth.
func boundedWidths(f function.Function) function.Function {
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      f.Params(),
		VarParam:    f.VarParam(),
		Type:        f.ReturnTypeForValues,
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 0 && args[0].IsKnown() && !args[0].IsNull() && args[0].Type() == cty.String {
				for _, m := range formatWidth.FindAllStringSubmatch(args[0].AsString(), -1) {
					for _, n := range m[1:] {
						if len(n) > 4 || (n != "" && mustAtoi(n) > maxFormatWidth) {
							return cty.NilVal, function.NewArgErrorf(0, "widths and precisions above %d are not supported", maxFormatWidth)
						}
					}
				}
			}
			return f.Call(args)
		},
	})
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
