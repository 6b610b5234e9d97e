package bridge

import (
	"testing"

	"github.com/medicops/medic/hcl"
)

// testHCL is the estate the bridge tests route against.
const testHCL = `
agent "a1" {
  node    = "n1"
  command = ["/bin/sleep", "3600"]
}

agent "a2" {
  node    = "n2"
  command = ["/bin/sleep", "3600"]
}

agent "floating" {
  command = ["/bin/sleep", "3600"]
}

runbook "recover" {
  match { alertname = "AgentDown" }
  verify {
    attempts = 1
    interval = "10ms"
  }
}

runbook "lost" {
  match { alertname = "Lost" }
  escalate { webhook = "http://ESCALATE_URL/hook" }
}
`

func loadTestConfig(t testing.TB, src string) *hcl.Config {
	t.Helper()
	cfg, diags := hcl.LoadSources([]hcl.Source{{Name: "test.hcl", Bytes: []byte(src)}})
	if diags.HasErrors() {
		t.Fatalf("load test config: %v", diags)
	}
	return cfg
}
