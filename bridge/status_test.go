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
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

func TestStatusPage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)

	// The snapshot medic node writes (exporter.NodeState), an older
	// shape (unreadable: the snapshot is exactly the node's type), a
	// silent node, a garbled snapshot and a snapshot that stopped being
	// refreshed.
	c.SAdd(ctx, "medic:nodes", "web-01", "web-02", "web-03", "web-04", "web-05")
	longProbe := "http http://127.0.0.1:39141/healthz: Get \\\"http://127.0.0.1:39141/healthz\\\": dial tcp 127.0.0.1:39141: connect: connection refused"
	c.Set(ctx, "medic:node:web-01:state", `{"node":"web-01","updated":"2026-11-22T00:59:58Z","agents":[
		{"name":"ops-agent","supervised":true,"up":true,"pid":4242,"probe_ok":true,"probe_detail":"200 OK",
		 "heartbeat_registered":false,"restarts":0,"usage":{"memory":0.1234,"cpu":0.004998,"disk":0.5,"rss_bytes":26468352}},
		{"name":"dead-agent","supervised":true,"up":false,"detail":"exited: exit status 1","restarts":3,"usage":{"memory":0,"cpu":0,"disk":0,"rss_bytes":0}},
		{"name":"hung-agent","supervised":true,"up":true,"pid":77,"heartbeat_registered":true,"heartbeat_age_seconds":12.3,
		 "heartbeat_timeout_seconds":5,"restarts":1,"usage":{"memory":0.91,"cpu":0.02,"disk":0.2047,"rss_bytes":9146368}},
		{"name":"beat-agent","supervised":true,"up":true,"pid":78,"heartbeat_registered":true,"heartbeat_age_seconds":0.072,
		 "heartbeat_timeout_seconds":2,"usage":{"memory":0.91,"cpu":0.85,"disk":0.995},"thresholds":{"memory":0.95}},
		{"name":"probe-agent","supervised":false,"up":true,"pid":79,"probe_ok":false,"probe_detail":"`+longProbe+`",
		 "color":"blue","future":{"nested":[1,2]}}]}`, time.Minute)
	c.Set(ctx, "medic:node:web-02:state", `{"time":1795309190000,"agents":{"hb-agent":{"state":"hung","heartbeat_age_seconds":31.5}}}`, time.Minute)
	c.Set(ctx, "medic:node:web-04:state", `{not json`, time.Minute)
	c.Set(ctx, "medic:node:web-05:state", `{"node":"web-05","updated":"2026-11-22T00:59:40Z","agents":[{"name":"x","up":true}]}`, time.Minute)

	store := jobs.NewRunStore(c, jobs.StoreOptions{Now: func() time.Time { return now }})
	exit0, exit1 := 0, 1
	longError := "http://127.0.0.1:39141/healthz:" + strings.Repeat("connection-refused/", 30)
	for _, r := range []*runbooks.RunRecord{
		{ID: "20261122T005900000-55b27e0471", Runbook: "agent-recovery", Agent: "ops-agent", Node: "web-01", Trigger: "alert",
			Outcome: runbooks.OutcomeRecovered, Causes: []string{"memory"}, Started: now.Add(-time.Minute), Duration: 2.5,
			Steps: []runbooks.Step{
				{Name: "liveness", OK: true, Detail: "pid 4242 alive"},
				{Name: "repair:memory", OK: true, ExitCode: &exit0, Output: "freed caches <script>alert(1)</script>"},
				{Name: "verify", OK: true, Duration: 0.4},
			}},
		{ID: "run-escalated-2", Runbook: "agent-recovery", Agent: "dead-agent", Node: "web-01", Trigger: "watchdog",
			Outcome: runbooks.OutcomeEscalated, Started: now.Add(-30 * time.Second), Error: "verify failed 3 times",
			Steps: []runbooks.Step{
				{Name: "restart", ExitCode: &exit1, Error: "start: exit status 1", Output: "line 1\nline 2\n"},
				{Name: "verify 1/2", Detail: "probe failed", Error: longError},
			}},
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
				// fleet-wide counts by state, each a link to the agents in it, and the node problems
				`<a class="pill bad" href="/?state=down#agents" data-count="down">1 down</a>`,
				`<a class="pill warn" href="/?state=failing#agents" data-count="failing">2 failing</a>`,
				`<a class="pill ok" href="/?state=up#agents" data-count="up">3 up</a>`,
				`<span class="muted">of 6 agents on 2 reporting nodes</span> <span class="pill bad" data-count="silent">1 node silent</span> <span class="pill bad" data-count="unreadable">2 unreadable</span> <span class="pill warn" data-count="old">1 with an old snapshot</span>`,
				`<tr data-node-problem="web-02" class="bad-row"><td><code>web-02</code></td>
<td><span class="pill bad">unreadable</span> <span class="small err">unreadable snapshot: agents is a JSON object, want an array</span></td></tr>`,
				`<tr data-node-problem="web-03" class="bad-row"><td><code>web-03</code></td>
<td><span class="pill bad">silent</span>`,
				`<tr data-node-problem="web-04" class="bad-row"><td><code>web-04</code></td>
<td><span class="pill bad">unreadable</span> <span class="small err">unreadable snapshot: invalid character &#39;n&#39; looking for beginning of object key string</span>`,
				`<tr data-node-problem="web-05" class="warn-row"><td><code>web-05</code></td>
<td><span class="pill warn" title="updated 2026-11-22 00:59:40Z">snapshot 20s ago</span>`,
				`<p class="pager" data-pager><b>1–6</b> of 6 agents, problems first</p>`,
				// a healthy agent: pid, probe, no heartbeat, usage in percent, RSS in binary units
				`<tr data-node="web-01" data-agent="ops-agent" class="ok-row">
<td><code>web-01</code></td>
<td><code>ops-agent</code></td>
<td><span class="pill ok">up</span></td>
<td class="num">4242</td>
<td title="200 OK"><span class="pill ok">ok</span></td>
<td class="num"><span class="muted">—</span></td>
<td class="num"><span class="muted">0</span></td>
<td class="num"><span title="threshold 80%">12%</span></td>
<td class="num"><span title="threshold 80%">0.5%</span></td>
<td class="num"><span title="threshold 99%">50%</span></td>
<td class="num">25 MiB</td>`,
				// a dead one: the node's word under the badge, its zeros not shown as readings
				`<tr data-node="web-01" data-agent="dead-agent" class="bad-row">`,
				`<span class="pill bad">down</span><br><span class="muted small" title="exited: exit status 1">exited: exit status 1</span>`,
				`<td class="num">3</td>
<td class="num"><span class="muted">—</span></td>`,
				// a hung one is failing: overdue heartbeat age in red against its timeout, memory above 80% in red
				`<tr data-node="web-01" data-agent="hung-agent" class="warn-row">`,
				`<span class="pill warn">failing</span><br><span class="muted small" title="heartbeat overdue: last 12.3s ago, timeout 5s">heartbeat overdue: last 12.3s ago, timeout 5s</span>`,
				`<span class="hot" title="overdue: no heartbeat for 12.3s, timeout 5s">12.3s</span><span class="muted"> / 5s</span>`,
				`<span class="hot" title="threshold 80%">91%</span>`,
				// the snapshot's own thresholds win over the defaults
				`<tr data-node="web-01" data-agent="beat-agent" class="ok-row">`, `<span>72ms</span><span class="muted"> / 2s</span>`,
				`<span title="threshold 95%">91%</span>`, `<span class="hot" title="threshold 80%">85%</span>`,
				`<span class="hot" title="threshold 99%">99.5%</span>`,
				// a failing probe: the detail truncated under the badge, whole in the title
				`<tr data-node="web-01" data-agent="probe-agent" class="warn-row">`,
				`<span class="pill bad">fail</span><br><span class="muted small">http http://127.0.0.1:39141/healthz: Get &#34;http://127.0.0.1:39141/heal…</span>`,
				`title="http http://127.0.0.1:39141/healthz: Get &#34;http://127.0.0.1:39141/healthz&#34;: dial tcp 127.0.0.1:39141: connect: connection refused"`,
				`<td><code>probe-agent</code><br><span class="muted small">unsupervised</span></td>`,
				// an agent of an old snapshot says so in its node cell
				`<tr data-node="web-05" data-agent="x" class="ok-row">
<td><code>web-05</code><br><span class="pill warn" title="updated 2026-11-22 00:59:40Z">snapshot 20s ago</span></td>`,
				// runs, newest first: short id with the full one in a title, agent on node, runbook and trigger
				`<tr class="run" data-run="run-escalated-2">`, `data-run="20261122T005900000-55b27e0471"`,
				`<code title="20261122T005900000-55b27e0471">55b27e0471</code>`,
				`<td title="2026-11-22 00:59:00Z">00:59:00Z<br><span class="muted small">1m00s ago</span></td>`,
				`<code>ops-agent</code><br><span class="muted small">on web-01</span>`,
				`agent-recovery<br><span class="muted small">watchdog</span>`,
				`<span class="pill ok" title="verified healthy after the repair and restart">recovered</span>`, `<span class="pill bad" title="still broken, or not allowed to restart: humans were told">escalated</span>`,
				`<td class="num">2.5s</td>`, `<td>memory</td>`,
				// steps with escaped output, folded unless the step failed
				`repair:memory`, `exit 0`, `exit 1`,
				`<details class="out"><summary>output · 1 line</summary><pre>freed caches &lt;script&gt;alert(1)&lt;/script&gt;</pre></details>`,
				`<details class="out" open><summary>output · 2 lines</summary><pre>line 1`,
				// a long error sits in the detail cell of a fixed-layout table that wraps anywhere
				`<td class="detail">probe failed<br><span class="err">` + longError + `</span>`,
				`table.agents, table.runs, table.steps { table-layout: fixed; }`, `overflow-wrap: anywhere;`,
				// a run that needs attention shows its steps unfolded
				`<details open><summary>2 steps · <span class="err">verify failed 3 times</span>`, `<details><summary>3 steps</summary>`,
				// pools
				`data-pool="routers"`, `data-pool="switches"`, `<code>cfg-agent-2</code>`,
				`<span class="pill warn" title="the pool's lock is held: a switchover is moving the backlog">switching</span>`, `<td class="num">12</td>`,
			},
			notWant: []string{"<script>alert(1)</script>", "future", "color=blue", `data-agent="hb-agent"`, `rel="next"`, ">free<", ">locked<"},
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
				if i, j := strings.Index(page, "run-escalated-2"), strings.Index(page, "55b27e0471"); i > j {
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
	store := jobs.NewRunStore(c, jobs.StoreOptions{})
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

func TestStatusFormats(t *testing.T) {
	tests := []struct{ got, want string }{
		{percent(0), "0%"},
		{percent(0.0004), "<0.1%"},
		{percent(0.004998), "0.5%"},
		{percent(0.01), "1%"},
		{percent(0.2047), "20%"},
		{percent(0.91), "91%"},
		{percent(0.99), "99%"},
		{percent(0.995), "99.5%"},
		{percent(1.2), "120%"},
		{humanBytes(0), "0 B"},
		{humanBytes(1023), "1023 B"},
		{humanBytes(8425472), "8.0 MiB"},
		{humanBytes(26468352), "25 MiB"},
		{humanBytes(3 << 30), "3.0 GiB"},
		{ago(612 * time.Millisecond), "612ms"},
		{ago(8600 * time.Millisecond), "8.6s"},
		{ago(4*time.Minute + 12*time.Second), "4m12s"},
		{ago(3*time.Hour + 4*time.Minute), "3h04m"},
		{ago(51 * time.Hour), "2d3h"},
		{shortID("20261122T010839545-55b27e0471"), "55b27e0471"},
		{shortID("run-1"), "run-1"},
		{shortID("an-id-without-a-long-random-tail-x"), "…andom-tail-x"},
		{truncate("héllo wörld", 6), "héllo…"},
		{truncate("short", 6), "short"},
	}
	for i, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%d: got %q, want %q", i, tc.got, tc.want)
		}
	}
}

// Mounted at StatusPagePattern next to the bridge's API, the status page
// serves "/" only and leaves the mux to answer a wrong method on an API
// path with 405 and its Allow header.
func TestStatusPageMount(t *testing.T) {
	tb := startTestBridge(t, testHCL, func(o *Options) { o.Token = "" }) // reads open: this is about routing
	mux := http.NewServeMux()
	tb.Register(mux)
	mux.Handle(StatusPagePattern, tb.Page(NewStatusPage(StatusOptions{Refresh: -1})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tests := []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/", 200, ""},
		{"HEAD", "/", 200, ""},
		{"POST", "/", 405, "GET, HEAD"},
		{"GET", "/nope", 404, ""},
		{"GET", "/api/v1/webhook", 405, "POST"},
		{"PUT", "/api/v1/webhook", 405, "POST"},
		{"DELETE", "/api/v1/runs", 405, "GET, HEAD"},
		{"POST", "/api/v1/runs/abc", 405, "GET, HEAD"},
		{"GET", "/-/reload", 405, "POST"},
		{"POST", "/-/healthy", 405, "GET, HEAD"},
		{"GET", "/api/v1/runs", 200, ""},
		{"GET", "/-/healthy", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if tc.path == "/" && tc.method == "GET" && !strings.Contains(string(body), "No runs recorded.") {
				t.Errorf("GET / is not the status page:\n%s", body)
			}
		})
	}
}

// The page itself refuses other paths and methods, wherever it is mounted.
func TestStatusPageRefuses(t *testing.T) {
	h := NewStatusPage(StatusOptions{Refresh: -1})
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/", 200, ""},
		{"GET", "/api/v1/webhook", 404, ""},
		{"POST", "/", 405, "GET, HEAD"},
		{"DELETE", "/", 405, "GET, HEAD"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d Allow %q, want %d Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.code, tc.allow)
		}
	}
}
