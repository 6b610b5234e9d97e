package bridge

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
)

func TestAppendJobIsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 891000000, time.UTC)
	odd := []string{"", "plain", `quo"te`, `back\slash`, "<b>&amp;</b>", "tab\tnl\ncr\r\b\f", "\x00\x01\x1f\x7f",
		"ünïcødé ✓ 日本", "\u2028\u2029", "bad \xff\xfe utf8", "\xe2\x82", "emoji 🚑"}
	jobs := []Job{
		{ID: "20260304T050607891-0a1b2c3d4e", Runbook: "agent-recovery", Agent: "ops-agent", Node: "web-01",
			Alert: hcl.Alert{Labels: map[string]string{"alertname": "AgentDown", "agent": "ops-agent", "zeta": "1", "alpha": "2"},
				Annotations: map[string]string{"summary": "down", "description": "it is <down> & out"},
				Status:      "firing", StartsAt: at, Fingerprint: "0123456789abcdef"},
			Enqueued: at, Deadline: at.Add(10 * time.Minute)},
		{Alert: hcl.Alert{}},
		{Alert: hcl.Alert{Labels: map[string]string{}, Annotations: map[string]string{}, StartsAt: at.In(time.FixedZone("x", 3600))}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		labels := map[string]string{}
		for range rng.IntN(20) {
			labels[odd[rng.IntN(len(odd))]+odd[rng.IntN(len(odd))]] = odd[rng.IntN(len(odd))]
		}
		jobs = append(jobs, Job{ID: odd[rng.IntN(len(odd))], Agent: odd[rng.IntN(len(odd))],
			Alert:    hcl.Alert{Labels: labels, Annotations: labels, Status: odd[rng.IntN(len(odd))], StartsAt: at.Add(time.Duration(rng.Int64()))},
			Enqueued: at.Add(time.Duration(rng.IntN(1e9)))})
	}
	for i, j := range jobs {
		want, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJob(nil, &j); string(got) != string(want) {
			t.Errorf("job %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
