package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/route"
	"github.com/medicops/medic/runbooks"
)

// differentialHCL has agents pinned to nodes and one that is not, and
// runbooks that take the agent from a label, from another label, or name
// it outright.
const differentialHCL = `
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
}

runbook "by-service" {
  matchers = ["alertname=~\"Service(Down|Slow)\""]
  agent    = lookup(alert.labels, "service", "")
}

runbook "disk" {
  match { alertname = "DiskFull" }
  agent = "a2"
}
`

// where is one alert's routing as seen from outside: runbook, agent, node
// and the unroutable reason.
type where struct {
	Runbook, Agent, Node, Reason string
}

// differentialPayloads are 50 webhooks mixing alerts that match and do
// not, known and unknown agents, agents with and without a node, node
// labels good and unusable, resolved alerts, several alerts per payload
// and label values meant to confuse (line breaks, braces, quotes, shell,
// very long values). Each alert has its own fingerprint.
func differentialPayloads() [][]alertJSON {
	agents := []string{"a1", "a2", "floating", "ghost", "", "a1\nnode: n9", "{n1}", "$(rm -rf /)", `a"1`, "ágent", strings.Repeat("a", 300)}
	nodes := []string{"", "", "n1", "n2", "n3", "n{1}", "bad\r\nnode", strings.Repeat("n", 254), "web 01", "-"}
	names := []string{"AgentDown", "AgentDown", "ServiceDown", "ServiceSlow", "DiskFull", "Other"}
	rng := rand.New(rand.NewPCG(16, 50))
	var out [][]alertJSON
	for i := range 50 {
		var alerts []alertJSON
		for j := range 1 + rng.IntN(4) {
			labels := map[string]string{"alertname": names[(i+j)%len(names)]}
			if ag := agents[rng.IntN(len(agents))]; ag != "" || rng.IntN(2) == 0 {
				key := "agent"
				if strings.HasPrefix(labels["alertname"], "Service") {
					key = "service"
				}
				labels[key] = ag
			}
			if n := nodes[rng.IntN(len(nodes))]; n != "" {
				labels["node"] = n
			}
			if rng.IntN(5) == 0 {
				labels["severity"] = "page\n}\"x"
			}
			status := "firing"
			if rng.IntN(4) == 0 {
				status = "resolved"
			}
			alerts = append(alerts, alertJSON{
				Status: status, Labels: labels, StartsAt: t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
				Fingerprint: fmt.Sprintf("%016x", i*16+j),
			})
		}
		out = append(out, alerts)
	}
	return out
}

// TestDifferentialBridgeAndPlan feeds the same 50 payloads to the bridge's
// webhook (against a real Redis, reading back the jobs and run records it
// wrote) and to `medic plan`'s output (route.Plan printed by
// hcl.WritePlan, parsed back), and asserts that they agree on every
// alert's runbook, agent, node and unroutable reason: one decoder and one
// router, whichever command asks (docs/design.md §8).
//
// The bridge runs without a node silence: whether a node is live is a fact
// of the running estate, which `plan` (no Redis) cannot see; with one, an
// alert for a silent node is recorded unroutable at enqueue
// (TestRoutingDeadNodes).
func TestDifferentialBridgeAndPlan(t *testing.T) {
	tb := startTestBridge(t, differentialHCL, nil)
	ctx := context.Background()
	payloads := differentialPayloads()

	fromPlan := map[string]where{}  // fingerprint → where plan sends it
	resolved := map[string]string{} // fingerprint of a routed resolved alert → its node
	kinds := map[string]int{}
	for i, alerts := range payloads {
		body := payload("firing", alerts...)
		if code, resp := tb.post(t, "Bearer "+testToken, body); code != 202 {
			t.Fatalf("payload %d: webhook %d %v", i, code, resp)
		}
		decoded, err := alert.Decode([]byte(body))
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		var out strings.Builder
		if err := hcl.WritePlan(&out, route.Plan(tb.cfg, decoded)); err != nil {
			t.Fatal(err)
		}
		for fp, w := range parsePlan(t, out.String()) {
			switch a := alertByFP(decoded, fp); {
			case w.Runbook == "":
				kinds["unmatched"]++
			case a.Status == "resolved" && w.Node != "":
				resolved[fp] = w.Node
				kinds["resolved"]++
			case a.Status == "resolved":
				kinds["resolved unroutable"]++ // the bridge leaves no trace of it
			case w.Node == "":
				fromPlan[fp] = w
				kinds["unroutable"]++
			default:
				fromPlan[fp] = w
				kinds["routed"]++
			}
		}
	}
	tb.Wait()
	for _, k := range []string{"unmatched", "resolved", "unroutable", "routed"} {
		if kinds[k] < 3 {
			t.Errorf("only %d %s alerts among the payloads: %v", kinds[k], k, kinds)
		}
	}

	// What the bridge did: jobs on node streams, unroutable run records,
	// and the cancelled episodes of resolved alerts.
	fromBridge := map[string]where{}
	var streams []string
	iter := tb.c.Scan(ctx, 0, keys.DefaultPrefix+"{node:*}:jobs", 1000).Iterator()
	for iter.Next(ctx) {
		streams = append(streams, iter.Val())
	}
	for _, s := range streams {
		entries, err := tb.c.XRange(ctx, s, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			var job jobs.Job
			if err := json.Unmarshal([]byte(e.Values["job"].(string)), &job); err != nil {
				t.Fatal(err)
			}
			if s != tb.opts.Keys.Jobs(job.Node) {
				t.Errorf("job for node %q on stream %s", job.Node, s)
			}
			fromBridge[job.Alert.Fingerprint] = where{Runbook: job.Runbook, Agent: job.Agent, Node: job.Node}
		}
	}
	recs, err := tb.Store().List(ctx, jobs.RunFilter{Outcome: runbooks.OutcomeUnroutable, Limit: jobs.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		fromBridge[r.Fingerprint] = where{Runbook: r.Runbook, Agent: r.Agent, Node: r.Node, Reason: r.Reason}
	}
	if diff := cmp.Diff(fromPlan, fromBridge); diff != "" {
		t.Errorf("plan and bridge disagree (-plan +bridge):\n%s", diff)
	}
	for fp, node := range resolved {
		a := alertByFP(decodedAll(t, payloads), fp)
		if v := tb.c.Get(ctx, tb.opts.Keys.Dedup(node, fp, a.StartsAt)).Val(); !strings.HasPrefix(v, "c:") {
			t.Errorf("resolved alert %s: episode on node %q is %q, want cancelled", fp, node, v)
		}
	}
}

func alertByFP(alerts []alert.Alert, fp string) alert.Alert {
	for _, a := range alerts {
		if a.Fingerprint == fp {
			return a
		}
	}
	return alert.Alert{}
}

func decodedAll(t *testing.T, payloads [][]alertJSON) []alert.Alert {
	var all []alert.Alert
	for _, p := range payloads {
		got, err := alert.Decode([]byte(payload("firing", p...)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	return all
}

// parsePlan reads back, from `medic plan`'s text, each alert's
// fingerprint, runbook, agent, node and unroutable reason.
func parsePlan(t *testing.T, text string) map[string]where {
	t.Helper()
	out := map[string]where{}
	var fp string
	var w where
	flush := func() {
		if fp != "" {
			out[fp] = w
		}
		fp, w = "", where{}
	}
	name := func(s string) string {
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				t.Fatalf("plan line %q: %v", s, err)
			}
			u, _ := strconv.Unquote(q)
			return u
		}
		n, _, _ := strings.Cut(s, " (")
		return n
	}
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "alert "):
			flush()
		case strings.HasPrefix(line, "  status:   "):
			_, f, ok := strings.Cut(line, ", fingerprint ")
			if !ok {
				t.Fatalf("plan status line without a fingerprint: %q", line)
			}
			fp = f
		case strings.HasPrefix(line, "  runbook:  "):
			w.Runbook, _, _ = strings.Cut(strings.TrimPrefix(line, "  runbook:  "), " (")
		case strings.HasPrefix(line, "  agent:    "):
			w.Agent = name(strings.TrimPrefix(line, "  agent:    "))
		case strings.HasPrefix(line, "  node:     "+hcl.Unroutable+" ("):
			w.Reason = strings.TrimSuffix(strings.TrimPrefix(line, "  node:     "+hcl.Unroutable+" ("), ")")
		case strings.HasPrefix(line, "  node:     "):
			w.Node = name(strings.TrimPrefix(line, "  node:     "))
		}
	}
	flush()
	return out
}
