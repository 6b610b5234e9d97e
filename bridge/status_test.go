package bridge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/runbooks"
)

func TestStatusPage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)

	// Three node snapshot shapes the page must read, one silent node and
	// one garbled snapshot.
	c.SAdd(ctx, "medic:nodes", "web-01", "web-02", "web-03", "web-04")
	// web-01 is what medic node writes (exporter.NodeState).
	c.Set(ctx, "medic:node:web-01:state", `{"node":"web-01","updated":"2026-11-22T00:59:58Z","agents":[
		{"name":"ops-agent","supervised":true,"up":true,"pid":4242,"probe_ok":true,"probe_detail":"200 OK",
		 "heartbeat_registered":false,"restarts":0,"usage":{"memory":0.1234,"cpu":0.01,"disk":0.5,"rss_bytes":1048576}},
		{"name":"dead-agent","supervised":true,"up":false,"detail":"exited: exit status 1","restarts":3,"usage":{"memory":0,"cpu":0,"disk":0,"rss_bytes":0}}]}`, time.Minute)
	c.Set(ctx, "medic:node:web-02:state", `{"time":1795309190000,"agents":{"hb-agent":{"state":"hung","heartbeat_age_seconds":31.5}}}`, time.Minute)
	c.Set(ctx, "medic:node:web-04:state", `{not json`, time.Minute)

	store := NewRunStore(c, StoreOptions{Now: func() time.Time { return now }})
	exit0, exit1 := 0, 1
	for _, r := range []*runbooks.RunRecord{
		{ID: "run-recovered-1", Runbook: "agent-recovery", Agent: "ops-agent", Node: "web-01", Trigger: "alert",
			Outcome: runbooks.OutcomeRecovered, Causes: []string{"memory"}, Started: now.Add(-time.Minute), Duration: 2.5,
			Steps: []runbooks.Step{
				{Name: "liveness", OK: true, Detail: "pid 4242 alive"},
				{Name: "repair:memory", OK: true, ExitCode: &exit0, Output: "freed caches <script>alert(1)</script>"},
				{Name: "verify", OK: true, Duration: 0.4},
			}},
		{ID: "run-escalated-2", Runbook: "agent-recovery", Agent: "dead-agent", Node: "web-01", Trigger: "watchdog",
			Outcome: runbooks.OutcomeEscalated, Started: now.Add(-30 * time.Second), Error: "verify failed 3 times",
			Steps: []runbooks.Step{{Name: "restart", ExitCode: &exit1, Error: "start: exit status 1"}}},
	} {
		if err := store.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	pools := func(context.Context) ([]PoolStatus, error) {
		return []PoolStatus{
			{Pool: "switches", Agent: "cfg-agent-2", Status: "active", Epoch: 7, Backlog: 12, Buffer: 0, Switchovers: 2,
				Agents: []PoolAgent{{ID: "cfg-agent-1", HeartbeatAge: 40}, {ID: "cfg-agent-2", Healthy: true, HeartbeatAge: 0.5}}},
			{Pool: "routers", Lock: true, Status: "switching", Buffer: 3},
		}, nil
	}
	h := NewStatusPage(StatusOptions{Runs: store, Redis: c, Pools: pools, Now: func() time.Time { return now }})

	tests := []struct {
		name, method, target string
		code                 int
		want, notWant        []string
	}{
		{
			name: "page", method: "GET", target: "/", code: 200,
			want: []string{
				`<meta http-equiv="refresh" content="5">`,
				// agents of every readable shape, with their state
				`data-agent="ops-agent"`, `<span class="pill ok">up</span>`, `pid=<code>4242</code>`, `usage.memory=<code>0.1234</code>`, `usage.rss_bytes=<code>1048576</code>`,
				`probe_detail=<code>200 OK</code>`, `detail=<code>exited: exit status 1</code>`,
				`data-agent="dead-agent"`, `<span class="pill bad">down</span>`,
				`data-agent="hb-agent"`, `<span class="pill bad">hung</span>`, `heartbeat_age_seconds=<code>31.5</code>`,
				`node <code>web-03</code> <span class="pill bad">no snapshot (node silent)</span>`,
				`unreadable snapshot`,
				"updated 2s ago",
				// runs, newest first, with steps and escaped output
				`data-run="run-escalated-2"`, `data-run="run-recovered-1"`,
				`<span class="pill ok">recovered</span>`, `<span class="pill bad">escalated</span>`,
				`repair:memory`, `exit 0`, `exit 1`, `freed caches &lt;script&gt;alert(1)&lt;/script&gt;`,
				`verify failed 3 times`, `memory`,
				// a run that needs attention shows its steps unfolded
				`<details open><summary>1 steps`, `<details><summary>3 steps`,
				// pools
				`data-pool="routers"`, `data-pool="switches"`, `<code>cfg-agent-2</code>`,
				`<span class="pill warn">locked</span>`, `<td>12</td>`,
			},
			notWant: []string{"<script>alert(1)</script>"},
		},
		{name: "no refresh", method: "GET", target: "/?refresh=0", code: 200, notWant: []string{`http-equiv="refresh"`}},
		{name: "other path", method: "GET", target: "/nope", code: 404},
		{name: "post", method: "POST", target: "/", code: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.code {
				t.Fatalf("code %d, want %d\n%s", rec.Code, tc.code, body)
			}
			page := string(body)
			for _, w := range tc.want {
				if !strings.Contains(page, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(page, w) {
					t.Errorf("page has %q", w)
				}
			}
			if tc.code == 200 {
				if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
					t.Errorf("Content-Type %q", ct)
				}
				if i, j := strings.Index(page, "run-escalated-2"), strings.Index(page, "run-recovered-1"); i > j {
					t.Errorf("runs not newest first")
				}
			}
			if t.Failed() {
				t.Logf("page:\n%s", page)
			}
		})
	}
}

// A failing source shows its error and the rest of the page still renders.
func TestStatusPageSourceErrors(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	store := NewRunStore(c, StoreOptions{})
	srv.Kill() // Redis is gone: nodes and runs fail
	h := NewStatusPage(StatusOptions{
		Runs: store, Redis: c,
		Pools:   func(context.Context) ([]PoolStatus, error) { return nil, errors.New("pools exploded") },
		Timeout: 500 * time.Millisecond,
	})
	ts := httptest.NewServer(h)
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("code %d", resp.StatusCode)
	}
	page := string(body)
	for _, w := range []string{`read nodes:`, `list runs:`, `pools exploded`, `No runs recorded.`, `No pools configured.`} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q:\n%s", w, page)
		}
	}
}

func TestStatusPageEmpty(t *testing.T) {
	rec := httptest.NewRecorder()
	NewStatusPage(StatusOptions{Refresh: -1}).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	for _, w := range []string{"No node has reported yet.", "No runs recorded.", "No pools configured."} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	if strings.Contains(page, "refresh") {
		t.Errorf("refresh disabled but present")
	}
}
