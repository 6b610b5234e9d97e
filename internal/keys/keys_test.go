package keys_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/queue"
	"github.com/medicops/medic/runbooks"
)

// rendered is every key function applied to sample names under prefix p,
// by the pattern it renders, through the packages' own key types where
// they have one.
func rendered(t *testing.T, p string) map[string]string {
	t.Helper()
	at := time.UnixMilli(1764990000123)
	jk := jobs.Keys{Prefix: p}
	bp := keys.Prefix(p) // the bare functions take the prefix in force
	qk, err := queue.NewKeys(p, "p1")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"medic:{node:NAME}:jobs":               jk.Jobs("n1"),
		"medic:{node:NAME}:dedup:FP:STARTS_MS": jk.Dedup("n1", "0a1b", at),
		"medic:{node:NAME}:expired":            jk.Outbox("n1"),
		"medic:{node:NAME}:seen":               jk.Seen("n1"),
		"medic:{node:NAME}:scripts":            keys.Scripts(bp, "n1"),
		"medic:{node:NAME}:incarnation":        runbooks.IncarnationKey(p, "n1"),
		"medic:dedup:FP:STARTS_MS":             jk.DedupUnroutable("0a1b", at),
		"medic:run:ID":                         jk.Run("r1"),
		"medic:runs":                           jk.RunIndex(),
		"medic:lease:NODE:AGENT":               bp + runbooks.LeaseKey("n1", "a1"),
		"medic:nodes":                          keys.Nodes(bp),
		"medic:node:NAME:state":                keys.NodeState(bp, "n1"),
		"medic:{auth}:session_epoch":           keys.SessionEpoch(bp),
		"medic:{ctl}:pause":                    keys.Pause(bp),
		"medic:{ctl}:approvals":                keys.Approvals(bp),
		"medic:{ctl}:decision:ID":              keys.Decision(bp, "r1"),
		"medic:{ctl}:asked:ID":                 keys.Asked(bp, "r1"),
		"medic:{agent:NODE/AGENT}:budget":      keys.Budget(bp, "n1", "a1"),
		"medic:{agent:NODE/AGENT}:backoff":     keys.Backoff(bp, "n1", "a1"),
		"medic:{agent:NODE/AGENT}:circuit":     keys.Circuit(bp, "n1", "a1"),
		"medic:{rb:RUNBOOK}:conc:KEY":          keys.Conc(bp, "rb1", "k1"),
		"medic:{rb:RUNBOOK}:queue:KEY":         keys.Queue(bp, "rb1", "k1"),
		"medic:{rb:RUNBOOK}:qlease:KEY":        keys.QLease(bp, "rb1", "k1"),
		"medic:{pool:NAME}:ctl":                qk.Ctl(),
		"medic:{pool:NAME}:in:AGENT":           qk.In("a1"),
		"medic:{pool:NAME}:buf":                qk.Buf(),
		"medic:{pool:NAME}:seq":                qk.Seq(),
		"medic:{pool:NAME}:ack":                qk.Ack(),
		"medic:{pool:NAME}:agents":             qk.Agents(),
		"medic:{pool:NAME}:coord":              qk.Lease(),
		"medic:{pool:NAME}:idem:KEY":           qk.Idem("k1"),
		"medic:{pool:NAME}:dev":                qk.Dev(),
		"medic:{pool:NAME}:blocked":            qk.Blocked(),
		"medic:{pool:NAME}:retrying":           qk.Retrying(),
		"medic:{pool:NAME}:held":               qk.Held(),
		"medic:{pool:NAME}:dead":               qk.Dead(),
		"medic:{pool:NAME}:actions":            qk.Actions(),
	}
}

// TestKeysPinned pins every key byte for byte, with the default prefix and
// another one: a key changes only with a migration (docs/design.md §7).
func TestKeysPinned(t *testing.T) {
	want := map[string]string{
		"medic:{node:NAME}:jobs":               "{node:n1}:jobs",
		"medic:{node:NAME}:dedup:FP:STARTS_MS": "{node:n1}:dedup:0a1b:1764990000123",
		"medic:{node:NAME}:expired":            "{node:n1}:expired",
		"medic:{node:NAME}:seen":               "{node:n1}:seen",
		"medic:{node:NAME}:scripts":            "{node:n1}:scripts",
		"medic:{node:NAME}:incarnation":        "{node:n1}:incarnation",
		"medic:dedup:FP:STARTS_MS":             "dedup:0a1b:1764990000123",
		"medic:run:ID":                         "run:r1",
		"medic:runs":                           "runs",
		"medic:lease:NODE:AGENT":               "lease:n1:a1",
		"medic:nodes":                          "nodes",
		"medic:node:NAME:state":                "node:n1:state",
		"medic:{auth}:session_epoch":           "{auth}:session_epoch",
		"medic:{ctl}:pause":                    "{ctl}:pause",
		"medic:{ctl}:approvals":                "{ctl}:approvals",
		"medic:{ctl}:decision:ID":              "{ctl}:decision:r1",
		"medic:{ctl}:asked:ID":                 "{ctl}:asked:r1",
		"medic:{agent:NODE/AGENT}:budget":      "{agent:n1/a1}:budget",
		"medic:{agent:NODE/AGENT}:backoff":     "{agent:n1/a1}:backoff",
		"medic:{agent:NODE/AGENT}:circuit":     "{agent:n1/a1}:circuit",
		"medic:{rb:RUNBOOK}:conc:KEY":          "{rb:rb1}:conc:k1",
		"medic:{rb:RUNBOOK}:queue:KEY":         "{rb:rb1}:queue:k1",
		"medic:{rb:RUNBOOK}:qlease:KEY":        "{rb:rb1}:qlease:k1",
		"medic:{pool:NAME}:ctl":                "{pool:p1}:ctl",
		"medic:{pool:NAME}:in:AGENT":           "{pool:p1}:in:a1",
		"medic:{pool:NAME}:buf":                "{pool:p1}:buf",
		"medic:{pool:NAME}:seq":                "{pool:p1}:seq",
		"medic:{pool:NAME}:ack":                "{pool:p1}:ack",
		"medic:{pool:NAME}:agents":             "{pool:p1}:agents",
		"medic:{pool:NAME}:coord":              "{pool:p1}:coord",
		"medic:{pool:NAME}:idem:KEY":           "{pool:p1}:idem:k1",
		"medic:{pool:NAME}:dev":                "{pool:p1}:dev",
		"medic:{pool:NAME}:blocked":            "{pool:p1}:blocked",
		"medic:{pool:NAME}:retrying":           "{pool:p1}:retrying",
		"medic:{pool:NAME}:held":               "{pool:p1}:held",
		"medic:{pool:NAME}:dead":               "{pool:p1}:dead",
		"medic:{pool:NAME}:actions":            "{pool:p1}:actions",
	}
	for _, p := range []string{"medic:", "acme/prod:"} {
		w := map[string]string{}
		for k, v := range want {
			w[k] = p + v
		}
		if d := cmp.Diff(w, rendered(t, p)); d != "" {
			t.Errorf("prefix %q: keys (-pinned +rendered):\n%s", p, d)
		}
	}
	// "" is the default prefix everywhere.
	if d := cmp.Diff(rendered(t, "medic:"), rendered(t, "")); d != "" {
		t.Errorf("prefix \"\" is not medic: (-medic: +\"\"):\n%s", d)
	}
}

// TestTable: the table lists exactly the keys rendered above, each with an
// owner, type and purpose, its hash tag as it appears in the key; and
// docs/design.md §7 and the README list every one.
func TestTable(t *testing.T) {
	pinned := rendered(t, "medic:")
	seen := map[string]bool{}
	for _, k := range keys.Table {
		seen[k.Pattern] = true
		if _, ok := pinned[k.Pattern]; !ok {
			t.Errorf("table row %s: no key function renders it", k.Pattern)
		}
		if k.Owner == "" || k.Type == "" || k.Purpose == "" || !strings.Contains(k.Pattern, k.Tag) {
			t.Errorf("table row %+v: owner, type, purpose and a tag that is in the key, please", k)
		}
		if tag := between(k.Pattern, "{", "}"); tag != k.Tag {
			t.Errorf("table row %s: tag %q, the key has %q", k.Pattern, k.Tag, tag)
		}
	}
	for p := range pinned {
		if !seen[p] {
			t.Errorf("key %s is missing from keys.Table", p)
		}
	}
	for _, doc := range []string{"../../docs/design.md", "../../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys.Table {
			if !strings.Contains(string(b), "`"+k.Pattern+"`") {
				t.Errorf("%s does not list %s", doc, k.Pattern)
			}
		}
	}
}

func between(s, open, close string) string {
	i := strings.Index(s, open)
	j := strings.Index(s, close)
	if i < 0 || j < i {
		return ""
	}
	return s[i : j+1]
}
