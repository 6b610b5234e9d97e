package bridge

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/hcl"
)

// fullPayload is a webhook as Alertmanager sends it (json.Encoder: HTML
// characters escaped, a trailing newline).
const fullPayload = `{"receiver":"medic","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"MedicAgentUnhealthy","agent":"a1","instance":"host-01:9105","job":"medic-node","severity":"critical"},"annotations":{"summary":"agent a1 is unhealthy","description":"medic_agent_probe_success of agent a1 on host-01 has been 0 for 30s."},"startsAt":"2026-12-03T06:18:58.000Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example:9090/graph?g0.expr=medic_agent_probe_success+%3D%3D+0\u0026g0.tab=1","fingerprint":"0102000000000001"}],"groupLabels":{"alertname":"MedicAgentUnhealthy","agent":"a1"},"commonLabels":{"alertname":"MedicAgentUnhealthy","agent":"a1","instance":"host-01:9105","job":"medic-node","severity":"critical"},"commonAnnotations":{"summary":"agent a1 is unhealthy","description":"medic_agent_probe_success of agent a1 on host-01 has been 0 for 30s."},"externalURL":"http://alertmanager.example:9093","version":"4","groupKey":"{}:{alertname=\"MedicAgentUnhealthy\", agent=\"a1\"}","truncatedAlerts":0}
`

var decodeSeeds = []string{
	fullPayload,
	`{"alerts":[]}`,
	`{"alerts":null}`,
	`{"alerts":{}}`,
	`{"Alerts":[{"status":"firing"}]}`,
	`{"alerts":[],"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"},{"status":"resolved","labels":{"a":"c"},"startsAt":"2026-01-01T00:00:01Z","fingerprint":"ab"}]}`,
	`{"alerts":[{"STATUS":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"ſtatus":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z","Key":1}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"b"},"labels":{"c":"d"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"b","a":"c"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":null,"labels":null,"annotations":null,"startsAt":null,"fingerprint":null}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"\ud800"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"\ud800\u0041"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"\ud83d\ude91 \u00e9 \\ \/ \" \n"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a\u0041":"x\u0000y"},"startsAt":"2026-01-01T00:00:00Z"}]}`,
	"{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"a\":\"\xff\xfe\"},\"startsAt\":\"2026-01-01T00:00:00Z\"}]}",
	"{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"a\":\"tab\there\"},\"startsAt\":\"2026-01-01T00:00:00Z\"}]}",
	`{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z","extra":[1,{"x":null}],"generatorURL":3}]}`,
	`{"alerts":[null]}`,
	`{"alerts":[1]}`,
	`[]`,
	`"alerts"`,
	`{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]} trailing`,
	`{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"\u0030\u0031"}]}`,
	`{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z","n":1e999,"m":-0.0e+1}]}`,
	"  {\n  \"alerts\" : [ { \"status\" : \"firing\" , \"labels\" : { \"a\" : \"b\" } , \"startsAt\" : \"2026-01-01T00:00:00Z\" } ]\n}\n",
}

// checkDecodeFast fails when decodeFast answers and its answer is not
// encoding/json's.
func checkDecodeFast(t *testing.T, data string) {
	t.Helper()
	got, ok := decodeFast([]byte(data))
	if !ok {
		return
	}
	var msg struct {
		Alerts *[]wireAlert `json:"alerts"`
	}
	if err := json.Unmarshal([]byte(data), &msg); err != nil {
		t.Fatalf("decodeFast accepted what encoding/json refuses (%v): %q", err, data)
	}
	if msg.Alerts == nil {
		t.Fatalf("decodeFast found alerts where encoding/json found none: %q", data)
	}
	if diff := cmp.Diff(*msg.Alerts, got); diff != "" {
		t.Fatalf("decodeFast differs from encoding/json (-json +fast):\n%s\ninput %q", diff, data)
	}
}

func TestDecodeFastAgreesWithEncodingJSON(t *testing.T) {
	fast := 0
	for _, s := range decodeSeeds {
		checkDecodeFast(t, s)
		if _, ok := decodeFast([]byte(s)); ok {
			fast++
		}
	}
	// The fast path must actually serve what Alertmanager sends.
	if _, ok := decodeFast([]byte(fullPayload)); !ok {
		t.Error("the fast path refused Alertmanager's own payload")
	}
	if fast < 5 {
		t.Errorf("only %d seeds took the fast path", fast)
	}
	// And the answers of the whole decoder, errors included, are the same
	// with or without it, for every seed.
	for _, s := range decodeSeeds {
		a1, err1 := decodeWebhook([]byte(s))
		a2, err2 := slowDecodeForTest([]byte(s))
		if diff := cmp.Diff(a2, a1); diff != "" || errString(err1) != errString(err2) {
			t.Errorf("input %q: decodeWebhook = %v, %v; encoding/json alone = %v, %v", s, a1, err1, a2, err2)
		}
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.Contains(s, "alerts") {
			return
		}
		checkDecodeFast(t, s)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// slowDecodeForTest is decodeWebhook without the fast path.
func slowDecodeForTest(data []byte) ([]hcl.Alert, error) {
	return decodeWith(data, false)
}

func BenchmarkDecodeWebhook(b *testing.B) {
	data := []byte(fullPayload)
	for _, fast := range []bool{false, true} {
		name := "encoding-json"
		if fast {
			name = "fast"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := decodeWith(data, fast); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
