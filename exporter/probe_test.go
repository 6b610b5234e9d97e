package exporter

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/probe"
)

// runProbe hands a probe to its kind's prober (package probe tests each
// kind) with the probe's timeout, 2s when unset.
func TestRunProbe(t *testing.T) {
	closed := testport.Addr(t)
	tests := []struct {
		name   string
		probe  hcl.Probe
		detail string
	}{
		{"tcp closed", hcl.Probe{Kind: probe.TCP, Address: closed, Timeout: time.Second}, "tcp " + closed + ": "},
		{"default timeout", hcl.Probe{Kind: probe.Exec, Command: []string{"sleep", "5"}}, "timed out after 2s"},
		{"unknown kind", hcl.Probe{Kind: "icmp", Address: closed}, `unknown probe kind "icmp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, detail := runProbe(context.Background(), &tt.probe, nil)
			if ok || !strings.Contains(detail, tt.detail) {
				t.Fatalf("runProbe = %v %q, want false containing %q", ok, detail, tt.detail)
			}
		})
	}
}

// The probe of a real test agent passes, fails while it hangs, and the
// latest result (with its duration) is what the node exports.
func TestProbeOnDemandAgainstTestAgent(t *testing.T) {
	def, addr := testAgent(t, "probed")
	def.Probe.ExpectBody = regexp.MustCompile(`^ok probed pid \d+`)
	def.Probe.Timeout = 300 * time.Millisecond
	n := startNode(t, Options{Config: configOf(def)}, nil)
	n.waitServing(t, "probed")
	a, _ := n.agent("probed")
	if r := a.probeState(); !r.Done || !r.OK || r.Duration <= 0 {
		t.Fatalf("latest result = %+v", r)
	}
	call(t, "POST", "http://"+addr+"/hang", "")
	ok, detail, err := n.Probe(context.Background(), "probed")
	if err != nil || ok || !strings.Contains(detail, "deadline exceeded") {
		t.Fatalf("hung agent probe = %v %q %v", ok, detail, err)
	}
	if r := a.probeState(); r.OK || r.Duration < 300*time.Millisecond {
		t.Fatalf("latest result after hang = %+v", r)
	}
	if _, _, err := n.Probe(context.Background(), "nobody"); err == nil {
		t.Fatal("probe of an unknown agent: no error")
	}
}

func TestProbeLoopRunsPeriodically(t *testing.T) {
	def, _ := testAgent(t, "looped")
	def.Probe.Interval = 100 * time.Millisecond
	n := startNode(t, Options{Config: configOf(def)}, nil)
	a, _ := n.agent("looped")
	var first time.Time
	waitFor(t, 5*time.Second, "a passing periodic probe", func() bool {
		r := a.probeState()
		if r.OK && first.IsZero() {
			first = r.At
		}
		return r.OK
	})
	waitFor(t, 2*time.Second, "another periodic probe", func() bool { return a.probeState().At.After(first) })
}
