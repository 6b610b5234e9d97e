package hcl

import (
	"errors"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// errNotYet marks API the loader work has not filled in yet.
var errNotYet = errors.New("hcl: not implemented yet")

// Source is one named HCL input, for loading from memory (tests, fuzzing).
type Source struct {
	Name  string
	Bytes []byte
}

// Load reads one *.hcl file or every *.hcl file of a directory (sorted by
// name) and decodes and validates them as one configuration. The returned
// config is nil when diags has errors.
func Load(path string) (*Config, hcl2.Diagnostics) {
	return nil, hcl2.Diagnostics{{Severity: hcl2.DiagError, Summary: errNotYet.Error()}}
}

// LoadSources is Load over in-memory sources, in the given order.
func LoadSources(srcs []Source) (*Config, hcl2.Diagnostics) {
	return nil, hcl2.Diagnostics{{Severity: hcl2.DiagError, Summary: errNotYet.Error()}}
}

// Agent returns the agent called name, or nil.
func (c *Config) Agent(name string) *Agent {
	for _, a := range c.Agents {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Pool returns the pool called name, or nil.
func (c *Config) Pool(name string) *Pool {
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

// Match returns the first runbook (in load order) that matches the alert's
// labels, and for every runbook before it a reason why it did not match.
func (c *Config) Match(alert Alert) (rb *Runbook, skipped []string) {
	return nil, nil
}

// Matches reports whether the runbook's match and matchers all hold for the
// labels; when not, reason names the first condition that failed.
func (r *Runbook) Matches(labels map[string]string) (ok bool, reason string) {
	return false, errNotYet.Error()
}

// TargetAgent evaluates the runbook's agent expression (default
// alert.labels.agent) for the alert.
func (r *Runbook) TargetAgent(alert Alert) (string, error) {
	return "", errNotYet
}

// PoolName evaluates the switchover's pool expression (default
// alert.labels.pool) for the alert.
func (s *Switchover) PoolName(alert Alert) (string, error) {
	return "", errNotYet
}

// EvalContext builds the context conditions are evaluated in: `alert`,
// `agent` (may be nil) and `usage`, plus the side-effect-free functions.
func EvalContext(alert Alert, agent *Agent, usage Usage) *hcl2.EvalContext {
	return &hcl2.EvalContext{}
}

// Eval evaluates the cause's `when` condition to a bool.
func (c *Cause) Eval(ctx *hcl2.EvalContext) (bool, hcl2.Diagnostics) {
	return false, hcl2.Diagnostics{{Severity: hcl2.DiagError, Summary: errNotYet.Error()}}
}

// DeviceURLFor renders the pool's device_url template for one device.
func (p *Pool) DeviceURLFor(device string) (string, error) {
	return "", errNotYet
}
