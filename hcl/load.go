package hcl

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
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
			// Runbook tests (*.test.hcl, `medic test`) live beside the
			// runbooks they test and are not configuration.
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") && !IsTestFile(e.Name()) {
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

// decodedFile is one file parsed and decoded on its own; files are
// independent until their blocks are merged, in load order.
type decodedFile struct {
	diags  hcl2.Diagnostics // parse and top-level diagnostics
	blocks []decodedBlock
	// syntaxErr: the file does not parse, so it was not decoded. Decoding
	// the parser's recovered body only adds misleading errors (after an
	// unclosed brace every later block is "not expected here").
	syntaxErr bool
}

// decodedBlock keeps only the positions of its block, not the block, so
// that the syntax tree is garbage once the file is decoded: on a large
// estate, collecting is a good part of the load.
type decodedBlock struct {
	typ, name           string
	nameRange, defRange hcl2.Range
	agent               *Agent
	runbook             *Runbook
	pool                *Pool
	diags               hcl2.Diagnostics
}

func loadSources(srcs []Source) (*Config, hcl2.Diagnostics) {
	// Parsing allocates a few hundred times the source size in short-lived
	// syntax trees. On a large estate the collector would run dozens of times
	// per load, so give it more room while loading (measured: 1.19 s → 0.87 s
	// for 1,000 runbooks + 10,000 agents on 2 cores).
	total := 0
	for _, s := range srcs {
		total += len(s.Bytes)
	}
	if total > 1<<20 {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	l := &loader{
		cfg:  &Config{Sources: make(map[string][]byte, len(srcs))},
		defs: map[string]map[string]hcl2.Range{"agent": {}, "runbook": {}, "pool": {}},
	}
	files := decodeFiles(srcs)
	syntaxErr := false
	for i, s := range srcs {
		l.cfg.Sources[s.Name] = s.Bytes
		l.merge(files[i])
		syntaxErr = syntaxErr || files[i].syntaxErr
	}
	// With a file left out, references to its blocks would all look
	// undefined: check them once every file parses.
	if !syntaxErr {
		l.crossCheck()
	}
	if l.diags.HasErrors() {
		return nil, l.diags
	}
	l.cfg.agentIndex = make(map[string]*Agent, len(l.cfg.Agents))
	for _, a := range l.cfg.Agents {
		l.cfg.agentIndex[a.Name] = a
	}
	l.cfg.matchIdx = buildMatchIndex(l.cfg.Runbooks)
	l.cfg.poolIndex = make(map[string]*Pool, len(l.cfg.Pools))
	for _, p := range l.cfg.Pools {
		l.cfg.poolIndex[p.Name] = p
	}
	return l.cfg, l.diags
}

func decodeFile(src Source) decodedFile {
	var f decodedFile
	file, diags := hclsyntax.ParseConfig(src.Bytes, src.Name, hcl2.InitialPos)
	f.diags = diags
	if file == nil || file.Body == nil || diags.HasErrors() {
		f.syntaxErr = diags.HasErrors()
		return f
	}
	content, diags := file.Body.Content(rootSchema)
	f.diags = append(f.diags, diags...)
	f.blocks = decodeBlocks(content.Blocks)
	return f
}

func decodeBlocks(blocks hcl2.Blocks) []decodedBlock {
	out := make([]decodedBlock, 0, len(blocks))
	for _, block := range blocks {
		db := decodedBlock{typ: block.Type, name: block.Labels[0], nameRange: block.LabelRanges[0], defRange: block.DefRange}
		switch block.Type {
		case "agent":
			db.agent, db.diags = decodeAgent(block)
			db.agent.value = &lazyValue{}
		case "runbook":
			db.runbook, db.diags = decodeRunbook(block)
		case "pool":
			db.pool, db.diags = decodePool(block)
		}
		out = append(out, db)
	}
	return out
}

// merge adds one file's blocks in order; a block whose name is taken is
// reported and dropped, with its own diagnostics, as if never decoded.
func (l *loader) merge(f decodedFile) {
	l.diags = append(l.diags, f.diags...)
	for _, db := range f.blocks {
		if !l.unique(db) {
			continue
		}
		l.diags = append(l.diags, db.diags...)
		switch {
		case db.agent != nil:
			l.cfg.Agents = append(l.cfg.Agents, db.agent)
		case db.runbook != nil:
			l.cfg.Runbooks = append(l.cfg.Runbooks, db.runbook)
		case db.pool != nil:
			l.cfg.Pools = append(l.cfg.Pools, db.pool)
		}
	}
}

// unique records the block's name and reports a duplicate naming both
// places.
func (l *loader) unique(db decodedBlock) bool {
	defs := l.defs[db.typ]
	if first, dup := defs[db.name]; dup {
		l.diags = append(l.diags, &hcl2.Diagnostic{
			Severity: hcl2.DiagError,
			Summary:  fmt.Sprintf("Duplicate %s %q", db.typ, db.name),
			Detail:   fmt.Sprintf("The %s %q is first defined at %s; names must be unique across all loaded files.", db.typ, db.name, posString(first)),
			Subject:  db.nameRange.Ptr(),
			Context:  db.defRange.Ptr(),
		})
		return false
	}
	defs[db.name] = db.defRange
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
				// Suggest only agents the pool does not list already.
				others := slices.DeleteFunc(slices.Clone(agents), func(a string) bool { return slices.Contains(p.Agents, a) })
				l.diags = append(l.diags, unknownRef("agent", name, others, subject))
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
