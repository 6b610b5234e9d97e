package hcl

import (
	"strings"
	"testing"
)

// TestPoolUnknownAgentSuggestion: the "Did you mean" of a pool's unknown
// agent never names an agent the pool already lists.
func TestPoolUnknownAgentSuggestion(t *testing.T) {
	agents := `
agent "cfg-agent-1" {
  command = ["/bin/a"]
}
agent "cfg-agent-2" {
  command = ["/bin/a"]
}
`
	tests := []struct{ list, want string }{
		{`["cfg-agent-1", "cfg-agent-3"]`, `Did you mean "cfg-agent-2"?`},
		{`["cfg-agent-1", "cfg-agent-2", "cfg-agent-3"]`, `No agent "cfg-agent-3" is defined in the loaded files.`},
	}
	for _, tc := range tests {
		src := agents + `
pool "p" {
  agents         = ` + tc.list + `
  check_interval = "2s"
  device_url     = "http://${device}.example/api"
}
`
		_, diags := LoadSources([]Source{{Name: "p.hcl", Bytes: []byte(src)}})
		if len(diags) != 1 || diags[0].Summary != "Unknown agent" || !strings.HasSuffix(diags[0].Detail, tc.want) {
			t.Errorf("agents = %s: %v; want one Unknown agent ending %q", tc.list, diags, tc.want)
		}
	}
}
