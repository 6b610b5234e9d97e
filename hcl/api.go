package hcl

import (
	"path/filepath"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// Source is one named HCL input, for loading from memory (tests, fuzzing).
type Source struct {
	Name  string
	Bytes []byte
}

// Load reads one *.hcl file or every *.hcl file of a directory (sorted by
// name) and decodes and validates them as one configuration. The returned
// config is nil when diags has errors.
func Load(path string) (*Config, hcl2.Diagnostics) {
	srcs, diags := readSources(path)
	if diags.HasErrors() {
		return nil, diags
	}
	cfg, more := loadSources(srcs)
	return cfg, append(diags, more...)
}

// LoadSources is Load over in-memory sources, in the given order.
func LoadSources(srcs []Source) (*Config, hcl2.Diagnostics) {
	return loadSources(srcs)
}

// Agent returns the agent called name, or nil.
func (c *Config) Agent(name string) *Agent {
	if c.agentIndex != nil {
		return c.agentIndex[name]
	}
	for _, a := range c.Agents {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Pool returns the pool called name, or nil.
func (c *Config) Pool(name string) *Pool {
	if c.poolIndex != nil {
		return c.poolIndex[name]
	}
	for _, p := range c.Pools {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// AgentsForNode returns the agents a node called node runs: those with no
// node attribute and those whose node attribute equals node.
func (c *Config) AgentsForNode(node string) []*Agent {
	var out []*Agent
	for _, a := range c.Agents {
		if a.Node == "" || a.Node == node {
			out = append(out, a)
		}
	}
	return out
}

// LoadPaths loads several files and directories as one configuration, in
// the order given (each directory's files sorted by name), as
// `medic validate a.hcl dir/` does.
func LoadPaths(paths ...string) (*Config, hcl2.Diagnostics) {
	srcs, diags := ReadSources(paths...)
	cfg, more := loadSources(srcs)
	diags = append(diags, more...)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// ReadSources reads files and directories (their *.hcl files, sorted by
// name) in the order given, for callers that want the bytes even when
// loading fails, such as `medic validate` printing snippets.
func ReadSources(paths ...string) ([]Source, hcl2.Diagnostics) {
	var (
		srcs  []Source
		diags hcl2.Diagnostics
		seen  = map[string]bool{}
	)
	for _, p := range paths {
		s, d := readSources(p)
		diags = append(diags, d...)
		for _, src := range s {
			// `medic validate dir dir/a.hcl` names a.hcl twice; loading it
			// twice would report every block in it as a duplicate.
			key := src.Name
			if abs, err := filepath.Abs(src.Name); err == nil {
				key = abs
			}
			if !seen[key] {
				seen[key] = true
				srcs = append(srcs, src)
			}
		}
	}
	return srcs, diags
}
