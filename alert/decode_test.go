package alert

import (
	"errors"
	"testing"
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

// FuzzDecode: whatever the body, decoding answers a list of alerts
// or an input error (a 400), never a panic or another kind of error.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		alerts, err := Decode([]byte(s))
		var ie *InputError
		if err != nil && !errors.As(err, &ie) {
			t.Fatalf("input %q: error %v is not an input error", s, err)
		}
		if err == nil && alerts == nil {
			t.Fatalf("input %q: no error and no alert list", s)
		}
	})
}

// BenchmarkDecode is encoding/json on Alertmanager's own payload
// (BENCHMARKS.md, "Hand-written code against the library").
func BenchmarkDecode(b *testing.B) {
	data := []byte(fullPayload)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
