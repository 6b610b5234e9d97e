package hcl

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/prometheus/common/model"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// The helpers below decode one attribute's static value. Each returns
// diagnostics whose Subject is the attribute's expression and whose Context
// is the whole attribute, so `medic validate` points at the offending value.

func convertTo(val cty.Value, want cty.Type) (cty.Value, error) {
	return convert.Convert(val, want)
}

func attrDiag(attr *hcl2.Attribute, summary, detail string) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{
		Severity: hcl2.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  attr.Expr.Range().Ptr(),
		Context:  attr.Range.Ptr(),
	}
}

func exprDiag(expr hcl2.Expression, summary, detail string) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{
		Severity: hcl2.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  expr.Range().Ptr(),
	}
}

// staticValue evaluates an attribute that may not refer to anything and
// converts it to want.
func staticValue(attr *hcl2.Attribute, want cty.Type) (cty.Value, hcl2.Diagnostics) {
	val, ok := literalValue(attr.Expr)
	var diags hcl2.Diagnostics
	if !ok {
		val, diags = attr.Expr.Value(staticContext)
		diags = fixSubjects(diags, attr.Expr.Range())
	}
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	if !val.IsWhollyKnown() {
		return cty.NilVal, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("The value of %s must be known when the file is loaded.", attr.Name)))
	}
	if val.IsNull() {
		return cty.NilVal, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("The value of %s must not be null.", attr.Name)))
	}
	out, err := convert.Convert(val, want)
	if err != nil {
		return cty.NilVal, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value",
			fmt.Sprintf("The value of %s must be a %s, not a %s.", attr.Name, want.FriendlyName(), val.Type().FriendlyName())))
	}
	if !out.IsWhollyKnown() {
		return cty.NilVal, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("The value of %s must be known when the file is loaded.", attr.Name)))
	}
	return out, diags
}

// staticContext evaluates attributes that may call functions but refer to
// nothing.
var staticContext = &hcl2.EvalContext{Functions: functions}

// literalValue short-cuts the common case of a plain literal ("…", 0.8,
// true, ["a", "b"]): evaluating it through the template machinery is most of
// the decoding cost of a large estate.
func literalValue(expr hcl2.Expression) (cty.Value, bool) {
	switch e := expr.(type) {
	case *hclsyntax.LiteralValueExpr:
		return e.Val, true
	case *hclsyntax.TemplateExpr:
		if len(e.Parts) == 1 {
			if lit, ok := e.Parts[0].(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String && lit.Val.IsKnown() && !lit.Val.IsNull() {
				return lit.Val, true
			}
		}
	case *hclsyntax.TupleConsExpr:
		if len(e.Exprs) == 0 {
			return cty.EmptyTupleVal, true
		}
		vals := make([]cty.Value, len(e.Exprs))
		for i, x := range e.Exprs {
			v, ok := literalValue(x)
			if !ok {
				return cty.NilVal, false
			}
			vals[i] = v
		}
		return cty.TupleVal(vals), true
	}
	return cty.NilVal, false
}

// literalString returns the value of a plain quoted string without going
// through cty.
func literalString(expr hcl2.Expression) (string, bool) {
	if e, ok := expr.(*hclsyntax.TemplateExpr); ok && len(e.Parts) == 1 {
		if lit, ok := e.Parts[0].(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String && lit.Val.IsKnown() && !lit.Val.IsNull() {
			return lit.Val.AsString(), true
		}
	}
	return "", false
}

func decodeString(attr *hcl2.Attribute) (string, hcl2.Diagnostics) {
	if s, ok := literalString(attr.Expr); ok {
		return s, nil
	}
	val, diags := staticValue(attr, cty.String)
	if diags.HasErrors() {
		return "", diags
	}
	return val.AsString(), diags
}

func decodeBool(attr *hcl2.Attribute) (bool, hcl2.Diagnostics) {
	val, diags := staticValue(attr, cty.Bool)
	if diags.HasErrors() {
		return false, diags
	}
	return val.True(), diags
}

// decodeStringList decodes a list of strings; elements must not be null.
func decodeStringList(attr *hcl2.Attribute) ([]string, hcl2.Diagnostics) {
	if e, ok := attr.Expr.(*hclsyntax.TupleConsExpr); ok {
		out := make([]string, 0, len(e.Exprs))
		for _, x := range e.Exprs {
			s, ok := literalString(x)
			if !ok {
				break
			}
			out = append(out, s)
		}
		if len(out) == len(e.Exprs) {
			return out, nil
		}
	}
	val, diags := staticValue(attr, cty.List(cty.String))
	if diags.HasErrors() {
		return nil, diags
	}
	out := make([]string, 0, val.LengthInt())
	for it := val.ElementIterator(); it.Next(); {
		_, v := it.Element()
		if v.IsNull() {
			return nil, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("The elements of %s must not be null.", attr.Name)))
		}
		out = append(out, v.AsString())
	}
	return out, diags
}

// decodeArgv decodes a command line: a non-empty list of strings whose first
// element (the program) is not empty. It is never handed to a shell.
func decodeArgv(attr *hcl2.Attribute) ([]string, hcl2.Diagnostics) {
	argv, diags := decodeStringList(attr)
	if diags.HasErrors() {
		return nil, diags
	}
	if len(argv) == 0 {
		return nil, append(diags, attrDiag(attr, "Empty command",
			fmt.Sprintf("%s is an argv list and needs at least the program, e.g. [\"/opt/medic/repair/memory.sh\"].", attr.Name)))
	}
	if argv[0] == "" {
		subject := attr.Expr.Range()
		if elems, d := hcl2.ExprList(attr.Expr); !d.HasErrors() && len(elems) > 0 {
			subject = elems[0].Range()
		}
		return nil, append(diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  "Empty command",
			Detail:   fmt.Sprintf("The first element of %s is the program to run and must not be empty.", attr.Name),
			Subject:  subject.Ptr(),
			Context:  attr.Range.Ptr(),
		})
	}
	return argv, diags
}

func decodeStringMap(attr *hcl2.Attribute) (map[string]string, hcl2.Diagnostics) {
	if m, ok := literalStringMap(attr.Expr); ok {
		return m, nil
	}
	val, diags := staticValue(attr, cty.Map(cty.String))
	if diags.HasErrors() {
		return nil, diags
	}
	out := make(map[string]string, val.LengthInt())
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if v.IsNull() {
			return nil, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("The value of %s[%q] must not be null.", attr.Name, k.AsString())))
		}
		out[k.AsString()] = v.AsString()
	}
	return out, diags
}

// literalStringMap is the value of an object constructor whose keys are
// names or literal strings, all distinct, and whose values are literal
// strings: the common `env = { LOG_LEVEL = "info" }`, decoded without
// evaluating it and converting the object (a large part of decoding an
// agent). Anything else is left to the general path.
func literalStringMap(expr hcl2.Expression) (map[string]string, bool) {
	e, ok := expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return nil, false
	}
	out := make(map[string]string, len(e.Items))
	for _, item := range e.Items {
		key, ok := item.KeyExpr.(*hclsyntax.ObjectConsKeyExpr)
		if !ok || key.ForceNonLiteral {
			return nil, false
		}
		k := hcl2.ExprAsKeyword(key.Wrapped)
		if k == "" {
			if k, ok = literalString(key.Wrapped); !ok {
				return nil, false
			}
		}
		v, ok := literalString(item.ValueExpr)
		if _, dup := out[k]; !ok || dup {
			return nil, false
		}
		out[k] = v
	}
	return out, true
}

// decodeDuration accepts Go durations ("1m30s", "250ms") and Prometheus ones
// ("1d", "1w"); the result must be positive.
func decodeDuration(attr *hcl2.Attribute) (time.Duration, hcl2.Diagnostics) {
	s, diags := decodeString(attr)
	if diags.HasErrors() {
		return 0, diags
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		md, merr := model.ParseDuration(s)
		if merr != nil {
			return 0, append(diags, attrDiag(attr, "Invalid duration",
				fmt.Sprintf("%q is not a duration; %s wants a number with a unit, e.g. \"30s\", \"2m\" or \"1h\".", s, attr.Name)))
		}
		d = time.Duration(md)
	}
	if d <= 0 {
		return 0, append(diags, attrDiag(attr, "Invalid duration", fmt.Sprintf("%s must be longer than zero.", attr.Name)))
	}
	return d, diags
}

// decodeRetryFor is a duration from "0s" (one attempt, no retries) to 24h.
func decodeRetryFor(attr *hcl2.Attribute) (time.Duration, hcl2.Diagnostics) {
	s, diags := decodeString(attr)
	if diags.HasErrors() {
		return 0, diags
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > 24*time.Hour {
		return 0, append(diags, attrDiag(attr, "Invalid duration",
			fmt.Sprintf("%q: retry_for wants a duration from \"0s\" (no retries) to \"24h\", e.g. \"5m\".", s)))
	}
	return d, diags
}

// decodeRatio decodes a number in [0,1].
func decodeRatio(attr *hcl2.Attribute) (float64, hcl2.Diagnostics) {
	val, diags := staticValue(attr, cty.Number)
	if diags.HasErrors() {
		return 0, diags
	}
	f, _ := val.AsBigFloat().Float64()
	if !(f >= 0 && f <= 1) {
		return 0, append(diags, attrDiag(attr, "Ratio out of range",
			fmt.Sprintf("%s is a ratio and must lie between 0 and 1 (0.80 means 80%%), not %s.", attr.Name, val.AsBigFloat().Text('g', 6))))
	}
	return f, diags
}

// decodeInt decodes a whole number in [min, max].
func decodeInt(attr *hcl2.Attribute, min, max int) (int, hcl2.Diagnostics) {
	val, diags := staticValue(attr, cty.Number)
	if diags.HasErrors() {
		return 0, diags
	}
	bf := val.AsBigFloat()
	if !bf.IsInt() {
		return 0, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("%s must be a whole number.", attr.Name)))
	}
	if bf.Cmp(big.NewFloat(float64(min))) < 0 || bf.Cmp(big.NewFloat(float64(max))) > 0 {
		return 0, append(diags, attrDiag(attr, "Invalid "+attr.Name+" value", fmt.Sprintf("%s must lie between %d and %d.", attr.Name, min, max)))
	}
	n, _ := bf.Int64()
	return int(n), diags
}

// suggest returns the candidate closest to name when it is close enough to
// be a likely typo, else "".
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		// An abbreviation ("mem" for "memory") is as likely as a typo.
		if len(name) >= 2 && strings.HasPrefix(c, name) {
			return c
		}
		if d := levenshtein(name, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
