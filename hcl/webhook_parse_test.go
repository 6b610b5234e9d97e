package hcl

import (
	"strings"
	"testing"
)

// TestParseWebhookErrors: a payload that is not a webhook says where (line
// and column) or which field, in the payload's terms, not Go's.
func TestParseWebhookErrors(t *testing.T) {
	tests := []struct {
		payload, want string
		notWant       string
	}{
		{`[]`, "want a JSON object at the top level, got array", "hcl."},
		{`"x"`, "want a JSON object at the top level, got string", "Go value"},
		{`{"alerts":{}}`, "alerts: want array, got object", "Data."},
		{`{"alerts":[{"labels":{"a":1}}]}`, "alerts.labels: want string, got number", "Go struct field"},
		{"{\"alerts\":[{\"status\":\"firing\",\n \"labels\":{\"a\":\"b\"},}]}", "line 2, column 22: invalid character '}'", ""},
		{`{"alerts":[{"startsAt":"yesterday"}]}`, `an alert's time (startsAt, endsAt) is "yesterday", want RFC 3339`, "2006"},
		{`{}`, `no "alerts" list`, ""},
	}
	for _, tc := range tests {
		_, err := ParseWebhook([]byte(tc.payload))
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.notWant != "" && strings.Contains(err.Error(), tc.notWant)) {
			t.Errorf("ParseWebhook(%s) = %v; want an error containing %q (and not %q)", tc.payload, err, tc.want, tc.notWant)
		}
	}
}

// TestPlanAlertStatus: only a firing alert gets a plan; an alert whose
// status is neither firing nor resolved (which the bridge refuses) is
// ignored with the reason, not planned as if it were firing.
func TestPlanAlertStatus(t *testing.T) {
	cfg, diags := LoadSources([]Source{{Name: "s.hcl", Bytes: []byte(`
agent "a" {
  command = ["/bin/a"]
}
runbook "r" {
  match {
    alertname = "A"
  }
}`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct{ status, ignored string }{
		{"firing", ""},
		{"resolved", "resolved: medic acts on firing alerts only"},
		{"weird", `status "weird" is neither "firing" nor "resolved"`},
		{"", `status "" is neither "firing" nor "resolved"`},
	}
	for _, tc := range tests {
		p := cfg.Plan([]Alert{{Labels: map[string]string{"alertname": "A", "agent": "a"}, Status: tc.status}})[0]
		if (tc.ignored == "") != (p.Ignored == "") || !strings.Contains(p.Ignored, tc.ignored) || (tc.ignored != "" && len(p.Steps) > 0) {
			t.Errorf("status %q: ignored %q, %d steps; want ignored %q", tc.status, p.Ignored, len(p.Steps), tc.ignored)
		}
	}
}
