package hcl

import (
	"fmt"
	"strings"
	"testing"
)

// TestPoolMaxAttempts: max_attempts defaults to 10 and a bad value is
// reported at its file:line:col.
func TestPoolMaxAttempts(t *testing.T) {
	pool := func(attr string) string {
		return `agent "a1" {
  command = ["/bin/a"]
}
pool "p" {
  agents     = ["a1"]
  device_url = "http://${device}.example/api"
` + attr + `}
`
	}
	tests := []struct {
		attr string
		want int
		diag string // "": no error
	}{
		{"", DefaultMaxAttempts, ""},
		{"  max_attempts = 3\n", 3, ""},
		{"  max_attempts = 0\n", 0, "p.hcl:7:18: Invalid max_attempts value; max_attempts must lie between 1 and 1000000."},
		{"  max_attempts = 2.5\n", 0, "p.hcl:7:18: Invalid max_attempts value; max_attempts must be a whole number."},
		{"  max_attempts = \"x\"\n", 0, "p.hcl:7:18"},
	}
	for _, tc := range tests {
		cfg, diags := LoadSources([]Source{{Name: "p.hcl", Bytes: []byte(pool(tc.attr))}})
		if tc.diag == "" {
			if diags.HasErrors() {
				t.Errorf("%q: %v", tc.attr, diags)
				continue
			}
			if got := cfg.Pool("p").MaxAttempts; got != tc.want {
				t.Errorf("%q: MaxAttempts %d, want %d", tc.attr, got, tc.want)
			}
			continue
		}
		if len(diags) != 1 || diags[0].Subject == nil {
			t.Errorf("%q: %v; want one diagnostic %q", tc.attr, diags, tc.diag)
			continue
		}
		d := diags[0]
		got := fmt.Sprintf("%s:%d:%d: %s; %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, d.Summary, d.Detail)
		if !strings.HasPrefix(got, tc.diag) {
			t.Errorf("%q: %s; want %q", tc.attr, got, tc.diag)
		}
	}
}
