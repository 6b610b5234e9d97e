package alert

import (
	"errors"
	"strings"
	"testing"
)

// TestDecodeErrors: a payload that is not a webhook says where (line and
// column) or which alert and field, in the payload's terms, and is an
// input error (the bridge's 400; `medic plan` and `medic run` print it).
func TestDecodeErrors(t *testing.T) {
	tests := []struct{ payload, want string }{
		{`[]`, "body: json: cannot unmarshal array"},
		{`{"alerts":{}}`, "body: json: cannot unmarshal object"},
		{`{"alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-01-01T00:00:00Z"}]}`, "alerts[0].labels"},
		{"{\"alerts\":[{\"status\":\"firing\",\n \"labels\":{\"a\":\"b\"},}]}", "body: line 2, column 22: invalid character '}'"},
		{`{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"yesterday"}]}`, `alerts[0].startsAt: "yesterday" is not an RFC 3339 time`},
		{`{"alerts":[{"status":"weird","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`, `alerts[0].status: "weird", want "firing" or "resolved"`},
		{`{"alerts":[{"status":"firing","labels":{"a":"b"}}]}`, "alerts[0].startsAt: missing"},
		{`{}`, "alerts: missing"},
		{``, "body: empty"},
	}
	for _, tc := range tests {
		_, err := Decode([]byte(tc.payload))
		var ie *InputError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ie) {
			t.Errorf("Decode(%s) = %v; want an input error containing %q", tc.payload, err, tc.want)
		}
	}
}

// TestDecodeKeepsEachAlertsStatus: unknown fields are ignored, each alert
// keeps its own status, and a missing fingerprint is Alertmanager's.
func TestDecodeKeepsEachAlertsStatus(t *testing.T) {
	got, err := Decode([]byte(`{"version":"4","status":"firing","futureField":{"x":1},"alerts":[
		{"status":"firing","labels":{"alertname":"A"},"annotations":{"s":"x"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"f1","newAlertField":true},
		{"status":"resolved","labels":{"alertname":"B"},"startsAt":"2026-01-01T00:00:00Z"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Status != "firing" || got[0].Fingerprint != "f1" || got[0].Annotations["s"] != "x" ||
		got[1].Status != "resolved" || got[1].Fingerprint != Fingerprint(map[string]string{"alertname": "B"}) {
		t.Errorf("decoded %+v", got)
	}
}
