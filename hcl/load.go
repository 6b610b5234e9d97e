package hcl

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// readSources reads one file or the *.hcl files of a directory, sorted by
// name.
func readSources(p string) ([]Source, hcl2.Diagnostics) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, hcl2.Diagnostics{fileDiag(p, "Cannot read configuration", err.Error())}
	}
	files := []string{p}
	if fi.IsDir() {
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, hcl2.Diagnostics{fileDiag(p, "Cannot read configuration", err.Error())}
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, hcl2.Diagnostics{fileDiag(p, "No configuration files", fmt.Sprintf("Directory %s holds no *.hcl files.", p))}
		}
	}
	var (
		srcs  []Source
		diags hcl2.Diagnostics
	)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			diags = append(diags, fileDiag(f, "Cannot read configuration", err.Error()))
			continue
		}
		srcs = append(srcs, Source{Name: f, Bytes: b})
	}
	return srcs, diags
}

// loader accumulates one configuration across files. Every decode function
// appends its diagnostics and the loader keeps going, so one run of
// `medic validate` reports every problem, not the first.
type loader struct {
	cfg   *Config
	diags hcl2.Diagnostics
	// first definition of each name, per block type, for duplicate reports.
	defs map[string]map[string]hcl2.Range
}

func loadSources(srcs []Source) (*Config, hcl2.Diagnostics) {
	l := &loader{
		cfg:  &Config{Sources: make(map[string][]byte, len(srcs))},
		defs: map[string]map[string]hcl2.Range{"agent": {}, "runbook": {}, "pool": {}},
	}
	for _, s := range srcs {
		l.loadFile(s)
	}
	l.crossCheck()
	if l.diags.HasErrors() {
		return nil, l.diags
	}
	return l.cfg, l.diags
}

func (l *loader) loadFile(src Source) {
	l.cfg.Sources[src.Name] = src.Bytes
	file, diags := hclsyntax.ParseConfig(src.Bytes, src.Name, hcl2.InitialPos)
	l.diags = append(l.diags, diags...)
	if file == nil || file.Body == nil {
		return
	}
	content, diags := file.Body.Content(rootSchema)
	l.diags = append(l.diags, diags...)
	for _, block := range content.Blocks {
		if !l.unique(block) {
			continue
		}
		switch block.Type {
		case "agent":
			a, d := decodeAgent(block)
			l.diags = append(l.diags, d...)
			l.cfg.Agents = append(l.cfg.Agents, a)
		case "runbook":
			rb, d := decodeRunbook(block)
			l.diags = append(l.diags, d...)
			l.cfg.Runbooks = append(l.cfg.Runbooks, rb)
		case "pool":
			p, d := decodePool(block)
			l.diags = append(l.diags, d...)
			l.cfg.Pools = append(l.cfg.Pools, p)
		}
	}
}

// unique records the block's name and reports a duplicate naming both
// places.
func (l *loader) unique(block *hcl2.Block) bool {
	name := block.Labels[0]
	defs := l.defs[block.Type]
	if first, dup := defs[name]; dup {
		l.diags = append(l.diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  fmt.Sprintf("Duplicate %s %q", block.Type, name),
			Detail:   fmt.Sprintf("The %s %q is first defined at %s; names must be unique across all loaded files.", block.Type, name, posString(first)),
			Subject:  block.LabelRanges[0].Ptr(),
			Context:  block.DefRange.Ptr(),
		})
		return false
	}
	defs[name] = block.DefRange
	return true
}

// crossCheck validates references between blocks once every file is loaded.
func (l *loader) crossCheck() {
	agents := make([]string, 0, len(l.cfg.Agents))
	for _, a := range l.cfg.Agents {
		agents = append(agents, a.Name)
	}
	pools := make([]string, 0, len(l.cfg.Pools))
	for _, p := range l.cfg.Pools {
		pools = append(pools, p.Name)
	}
	agentDefs, poolDefs := l.defs["agent"], l.defs["pool"]

	for _, p := range l.cfg.Pools {
		if len(p.Agents) == 0 {
			continue
		}
		elems, _ := hcl2.ExprList(p.agentsExpr)
		seen := map[string]bool{}
		for i, name := range p.Agents {
			var subject *hcl2.Range
			if len(elems) == len(p.Agents) {
				subject = elems[i].Range().Ptr()
			} else if p.agentsExpr != nil {
				subject = p.agentsExpr.Range().Ptr()
			}
			if seen[name] {
				l.diags = append(l.diags, &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: fmt.Sprintf("Agent %q listed twice", name),
					Detail: fmt.Sprintf("Pool %q lists agent %q more than once.", p.Name, name), Subject: subject})
			}
			seen[name] = true
			if _, ok := agentDefs[name]; !ok {
				l.diags = append(l.diags, unknownRef("agent", name, agents, subject))
			}
		}
	}
	for _, rb := range l.cfg.Runbooks {
		if name, ok := staticString(rb.AgentExpr); ok {
			if _, known := agentDefs[name]; !known {
				l.diags = append(l.diags, unknownRef("agent", name, agents, rb.AgentExpr.Range().Ptr()))
			}
		}
		if rb.Switchover != nil {
			if name, ok := staticString(rb.Switchover.Pool); ok {
				if _, known := poolDefs[name]; !known {
					l.diags = append(l.diags, unknownRef("pool", name, pools, rb.Switchover.Pool.Range().Ptr()))
				}
			}
		}
	}
}

func unknownRef(kind, name string, known []string, subject *hcl2.Range) *hcl2.Diagnostic {
	detail := fmt.Sprintf("No %s %q is defined in the loaded files.", kind, name)
	if s := suggest(name, known); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	return &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: fmt.Sprintf("Unknown %s", kind), Detail: detail, Subject: subject}
}

// staticString returns the value of an expression that refers to nothing
// and evaluates to a string.
func staticString(expr hcl2.Expression) (string, bool) {
	if expr == nil || len(expr.Variables()) > 0 {
		return "", false
	}
	val, diags := expr.Value(&hcl2.EvalContext{Functions: functions})
	if diags.HasErrors() || !val.IsWhollyKnown() || val.IsNull() {
		return "", false
	}
	s, err := convertTo(val, cty.String)
	if err != nil {
		return "", false
	}
	return s.AsString(), true
}

// fileDiag is an error about a whole file, positioned at its start so that
// it still prints as file:1:1.
func fileDiag(name, summary, detail string) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: summary, Detail: detail,
		Subject: &hcl2.Range{Filename: name, Start: hcl2.InitialPos, End: hcl2.InitialPos}}
}
