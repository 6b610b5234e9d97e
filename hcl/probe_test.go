package hcl

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/probe"
)

// probeExamples holds, for every registered probe kind, a block setting each
// of its attributes, what it decodes to and how `medic plan` describes it.
// A kind registered in package probe without an example here fails
// TestProbeKindsDecodeAndPlan.
var probeExamples = map[string]struct {
	block string
	want  Probe
	plan  string
}{
	probe.HTTP: {
		block: `probe "http" {
    url           = "http://127.0.0.1:8081/healthz"
    expect_status = 204
    expect_body   = "^ok"
    timeout       = "1s"
    interval      = "5s"
  }`,
		want: Probe{Kind: "http", URL: "http://127.0.0.1:8081/healthz", ExpectStatus: 204, ExpectBody: regexp.MustCompile("^ok"),
			Timeout: time.Second, Interval: 5 * time.Second},
		plan: `http GET http://127.0.0.1:8081/healthz expecting 204 and a body matching "^ok" (timeout 1s)`,
	},
	probe.TCP: {
		block: `probe "tcp" {
    address  = "127.0.0.1:5432"
    timeout  = "3s"
    interval = "30s"
  }`,
		want: Probe{Kind: "tcp", Address: "127.0.0.1:5432", Timeout: 3 * time.Second, Interval: 30 * time.Second},
		plan: `tcp connect 127.0.0.1:5432 (timeout 3s)`,
	},
	probe.Exec: {
		block: `probe "exec" {
    command = ["/opt/batch/check", "--quick"]
  }`,
		want: Probe{Kind: "exec", Command: []string{"/opt/batch/check", "--quick"}, Timeout: DefaultProbeTimeout, Interval: DefaultProbeInterval},
		plan: `exec run ["/opt/batch/check", "--quick"] (timeout 2s)`,
	},
}

// Every registered probe kind decodes (each of its attributes has a decoder
// in probeAttrs) and has a `medic plan` description.
func TestProbeKindsDecodeAndPlan(t *testing.T) {
	decoders := map[string]bool{}
	for _, a := range probeAttrs {
		decoders[a.name] = true
	}
	for _, kind := range probe.Names() {
		t.Run(kind, func(t *testing.T) {
			k, _ := probe.Lookup(kind)
			for _, a := range k.Schema().Attributes {
				if !decoders[a.Name] {
					t.Errorf("attribute %q of probe kind %q has no decoder in probeAttrs", a.Name, kind)
				}
			}
			ex, ok := probeExamples[kind]
			if !ok {
				t.Fatalf("probe kind %q has no example in probeExamples", kind)
			}
			for _, a := range k.Attributes {
				if !strings.Contains(ex.block, a.Name+" ") {
					t.Errorf("the example of probe kind %q does not set %q", kind, a.Name)
				}
			}
			src := fmt.Sprintf("agent \"a\" {\n  command = [\"/bin/a\"]\n  %s\n}\n", ex.block)
			cfg, diags := LoadSources([]Source{{Name: "p.hcl", Bytes: []byte(src)}})
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got := cfg.Agents[0].Probe
			if diff := cmp.Diff(&ex.want, got, cmp.Comparer(sameRegexp)); diff != "" {
				t.Errorf("decoded probe (-want +got):\n%s", diff)
			}
			if text := probeText(got); text != ex.plan {
				t.Errorf("plan describes the probe as %q, want %q", text, ex.plan)
			}
		})
	}
}

func sameRegexp(a, b *regexp.Regexp) bool {
	return a == nil && b == nil || a != nil && b != nil && a.String() == b.String()
}

// An unknown kind is reported at the label, with the registered kinds.
func TestProbeUnknownKind(t *testing.T) {
	for _, tc := range []struct{ kind, detail string }{
		{"htp", `"htp" is not a probe kind. Did you mean "http"?`},
		{"dns", `"dns" is not a probe kind; use one of exec, http and tcp.`},
	} {
		src := fmt.Sprintf("agent \"a\" {\n  command = [\"/bin/a\"]\n  probe %q {\n    url = \"http://127.0.0.1/\"\n  }\n}\n", tc.kind)
		_, diags := LoadSources([]Source{{Name: "p.hcl", Bytes: []byte(src)}})
		const line = "p.hcl:3:9: error: Unsupported probe kind"
		if len(diags) != 1 || DiagnosticLine(diags[0]) != line || diags[0].Detail != tc.detail {
			t.Errorf("probe %q: %v; want %s: %s", tc.kind, diags, line, tc.detail)
		}
	}
}

// Attributes of another kind are rejected by the kind's schema.
func TestProbeAttributeOfAnotherKind(t *testing.T) {
	src := "agent \"a\" {\n  command = [\"/bin/a\"]\n  probe \"tcp\" {\n    address = \"127.0.0.1:1\"\n    url     = \"http://127.0.0.1/\"\n  }\n}\n"
	_, diags := LoadSources([]Source{{Name: "p.hcl", Bytes: []byte(src)}})
	if !diags.HasErrors() || !strings.Contains(diags.Error(), `Unsupported argument; An argument named "url" is not expected here.`) {
		t.Errorf("url in a tcp probe: %v", diags)
	}
}
