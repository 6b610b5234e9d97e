package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
)

func TestClassifyAgent(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name       string
		a          exporter.AgentState
		state, why string
	}{
		{"not alive", exporter.AgentState{Up: false}, AgentDown, "not alive"},
		{"not alive, with the node's word", exporter.AgentState{Up: false, Detail: "pid 42 exited (exit status 1)", ProbeOK: &yes}, AgentDown, "pid 42 exited (exit status 1)"},
		{"alive, no probe, no heartbeat", exporter.AgentState{Up: true}, AgentUp, ""},
		{"alive, probe passes", exporter.AgentState{Up: true, ProbeOK: &yes}, AgentUp, ""},
		{"alive, probe fails", exporter.AgentState{Up: true, ProbeOK: &no, ProbeDetail: "503"}, AgentFailing, "probe failing: 503"},
		{"alive, heartbeat overdue", exporter.AgentState{Up: true, HeartbeatRegistered: true, HeartbeatAge: 31.5, HeartbeatTimeout: 15}, AgentFailing, "heartbeat overdue: last 31.5s ago, timeout 15s"},
		{"alive, heartbeat fresh", exporter.AgentState{Up: true, HeartbeatRegistered: true, HeartbeatAge: 14.9, HeartbeatTimeout: 15}, AgentUp, ""},
		{"heartbeat exactly at its timeout is not overdue", exporter.AgentState{Up: true, HeartbeatRegistered: true, HeartbeatAge: 15, HeartbeatTimeout: 15}, AgentUp, ""},
		{"an unregistered heartbeat's age means nothing", exporter.AgentState{Up: true, HeartbeatAge: 100, HeartbeatTimeout: 15}, AgentUp, ""},
		{"both", exporter.AgentState{Up: true, ProbeOK: &no, ProbeDetail: "timeout", HeartbeatRegistered: true, HeartbeatAge: 20, HeartbeatTimeout: 5}, AgentFailing, "probe failing: timeout; heartbeat overdue: last 20s ago, timeout 5s"},
		{"down wins over a failing probe", exporter.AgentState{Up: false, ProbeOK: &no}, AgentDown, "not alive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state, why := ClassifyAgent(&tc.a)
			if state != tc.state || why != tc.why {
				t.Errorf("got %s (%q), want %s (%q)", state, why, tc.state, tc.why)
			}
		})
	}
}

// fleetFixture is a fleet written as medic nodes write it, and what the
// fleet view must make of it.
type fleetFixture struct {
	now      time.Time
	all      []FleetAgent // every agent, in the order the view must list them
	counts   FleetCounts
	nodes    FleetNodes
	problems []NodeProblem
}

// agentName is the i-th agent of a fixture node.
func agentName(i int) string { return fmt.Sprintf("agent-%d", i) }

// writeFleet writes n node snapshots of perNode agents each, plus a
// silent node (in the set, no snapshot), an unreadable one and an old one:
// on node i, agent 0 is down when i%10 == 3, agent 1's probe fails when
// i%7 == 2, and agent 2's heartbeat is overdue when i%5 == 1.
func writeFleet(t testing.TB, c redis.UniversalClient, n, perNode int, now time.Time) fleetFixture {
	t.Helper()
	ctx := context.Background()
	fx := fleetFixture{now: now}
	yes, no := true, false
	names := make([]any, 0, n+3)
	pipe := c.Pipeline()
	for i := range n {
		node := fmt.Sprintf("node-%05d", i)
		names = append(names, node)
		st := exporter.NodeState{Node: node, Updated: now.Add(-2 * time.Second)}
		for j := range perNode {
			a := exporter.AgentState{Name: agentName(j), Supervised: true, Up: true, PID: 1000 + j, ProbeOK: &yes, Restarts: uint64(j)}
			a.Usage.Memory, a.Usage.CPU, a.Usage.Disk, a.Usage.RSS = 0.2, 0.05, 0.4, 30<<20
			switch {
			case j == 0 && i%10 == 3:
				a.Up, a.PID, a.Detail = false, 0, "exited (exit status 1)"
			case j == 1 && i%7 == 2:
				a.ProbeOK, a.ProbeDetail = &no, "HTTP 503"
			case j == 2 && i%5 == 1:
				a.HeartbeatRegistered, a.HeartbeatAge, a.HeartbeatTimeout = true, 40, 15
			}
			st.Agents = append(st.Agents, a)
			state, reason := ClassifyAgent(&a)
			fx.all = append(fx.all, FleetAgent{Node: node, State: state, Reason: reason, Updated: st.Updated, AgentState: a})
			fx.counts.add(state)
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		pipe.Set(ctx, keys.NodeState("medic:", node), b, time.Hour)
		if pipe.Len() >= 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The problem nodes sort after every node-NNNNN.
	old := exporter.NodeState{Node: "zz-old", Updated: now.Add(-40 * time.Second), Agents: []exporter.AgentState{{Name: "stuck", Up: true}}}
	b, _ := json.Marshal(old)
	pipe.Set(ctx, keys.NodeState("medic:", "zz-old"), b, time.Hour)
	pipe.Set(ctx, keys.NodeState("medic:", "zz-unreadable"), `{"agents":{"older":"shape"}}`, time.Hour)
	names = append(names, "zz-old", "zz-silent", "zz-unreadable")
	pipe.SAdd(ctx, keys.Nodes("medic:"), names...)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	fx.all = append(fx.all, FleetAgent{Node: "zz-old", State: AgentUp, Updated: old.Updated, AgentState: old.Agents[0]})
	fx.counts.Up++
	slices.SortFunc(fx.all, fleetOrder)
	fx.nodes = FleetNodes{Total: n + 3, Reporting: n + 1, Silent: 1, Unreadable: 1, Old: 1}
	fx.problems = []NodeProblem{
		{Node: "zz-old", Problem: NodeOld, Updated: old.Updated},
		{Node: "zz-silent", Problem: NodeSilent},
		{Node: "zz-unreadable", Problem: NodeUnreadable, Error: "unreadable snapshot: agents is a JSON object, want an array"},
	}
	return fx
}

// getAgents is GET /api/v1/agents?query with the test token.
func getAgents(t *testing.T, base, query string) (int, *FleetPage, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/agents?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil, string(body)
	}
	var p FleetPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return resp.StatusCode, &p, string(body)
}

func keyOf(a FleetAgent) string { return a.State + " " + a.Node + "/" + a.Name }

func keysOf(as []FleetAgent) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = keyOf(a)
	}
	return out
}

// GET /api/v1/agents over 250 nodes (more than the 200 the status page
// used to cut at): counts, states, ordering, filters and every page.
func TestFleetAPI(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	tb := startTestBridge(t, testHCL, func(o *Options) {
		// Every request reads Redis: the test changes nothing between
		// requests, but a shared reading must not hide a bug.
		o.Fleet = NewFleet(FleetOptions{Redis: o.Client, MaxAge: -1})
	})
	fx := writeFleet(t, tb.c, 250, 4, now)
	base := tb.srv.URL

	// Same authentication as the other reads.
	resp, err := http.Get(base + "/api/v1/agents")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", resp.StatusCode)
	}

	// The first page: fleet-wide counts, problems first.
	code, p, body := getAgents(t, base, "")
	if code != 200 {
		t.Fatalf("GET /api/v1/agents: %d %s", code, body)
	}
	if p.Counts != fx.counts || p.Counts.Total() != 1001 {
		t.Errorf("counts %+v, want %+v (1001 agents)", p.Counts, fx.counts)
	}
	if p.Counts.Down != 25 || p.Counts.Failing != 36+50 {
		t.Errorf("counts %+v, want 25 down and 86 failing", p.Counts)
	}
	if p.Nodes != fx.nodes {
		t.Errorf("nodes %+v, want %+v", p.Nodes, fx.nodes)
	}
	if diff := cmp.Diff(fx.problems, p.NodeProblems); diff != "" {
		t.Errorf("node problems (-want +got):\n%s", diff)
	}
	if p.Total != 1001 || p.Offset != 0 || len(p.Agents) != DefaultFleetLimit || p.Next == "" {
		t.Errorf("first page: total %d offset %d, %d agents, next %q; want 1001, 0, %d, a cursor", p.Total, p.Offset, len(p.Agents), p.Next, DefaultFleetLimit)
	}
	if diff := cmp.Diff(keysOf(fx.all[:DefaultFleetLimit]), keysOf(p.Agents)); diff != "" {
		t.Errorf("first page order (-want +got):\n%s", diff)
	}
	if a := p.Agents[0]; a.State != AgentDown || a.Node != "node-00003" || a.Name != "agent-0" || a.Reason != "exited (exit status 1)" || a.Up || a.Restarts != 0 || !a.Updated.Equal(now.Add(-2*time.Second)) {
		t.Errorf("first agent %+v, want node-00003/agent-0 down with the snapshot's fields", a)
	}

	// Every page, 150 at a time: every agent exactly once, in order.
	var got []FleetAgent
	query := "limit=150"
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("more than 10 pages of 150 for 1001 agents")
		}
		code, p, body := getAgents(t, base, query)
		if code != 200 {
			t.Fatalf("%s: %d %s", query, code, body)
		}
		if p.Offset != len(got) || p.Total != 1001 {
			t.Errorf("%s: offset %d total %d, want %d and 1001", query, p.Offset, p.Total, len(got))
		}
		got = append(got, p.Agents...)
		if p.Next == "" {
			break
		}
		query = "limit=150&cursor=" + url.QueryEscape(p.Next)
	}
	if diff := cmp.Diff(keysOf(fx.all), keysOf(got)); diff != "" {
		t.Errorf("all pages (-want +got):\n%s", diff)
	}

	// Filters.
	want := func(pred func(FleetAgent) bool) []string {
		var out []string
		for _, a := range fx.all {
			if pred(a) {
				out = append(out, keyOf(a))
			}
		}
		return out
	}
	for _, tc := range []struct {
		query string
		pred  func(FleetAgent) bool
	}{
		{"state=down", func(a FleetAgent) bool { return a.State == AgentDown }},
		{"state=failing&limit=1000", func(a FleetAgent) bool { return a.State == AgentFailing }},
		{"state=down,failing&limit=1000", func(a FleetAgent) bool { return a.State != AgentUp }},
		{"state=down&state=failing&limit=1000", func(a FleetAgent) bool { return a.State != AgentUp }},
		{"node=node-00243", func(a FleetAgent) bool { return a.Node == "node-00243" }}, // past the old cut at 200
		{"node=node-00213&state=up", func(a FleetAgent) bool { return a.Node == "node-00213" && a.State == AgentUp }},
		{"node=zz-old", func(a FleetAgent) bool { return a.Node == "zz-old" }},
		{"node=nope", func(FleetAgent) bool { return false }},
	} {
		code, p, body := getAgents(t, base, tc.query)
		if code != 200 {
			t.Errorf("%s: %d %s", tc.query, code, body)
			continue
		}
		w := want(tc.pred)
		if diff := cmp.Diff(w, keysOf(p.Agents), cmpopts.EquateEmpty()); diff != "" || p.Total != len(w) {
			t.Errorf("%s: total %d, want %d; agents (-want +got):\n%s", tc.query, p.Total, len(w), diff)
		}
		if p.Counts != fx.counts {
			t.Errorf("%s: counts %+v, want the fleet's %+v whatever the filter", tc.query, p.Counts, fx.counts)
		}
	}
	if _, p, _ := getAgents(t, base, "node=zz-silent"); p == nil || len(p.NodeProblems) != 1 || p.NodeProblems[0].Problem != NodeSilent || len(p.Agents) != 0 {
		t.Errorf("node=zz-silent: %+v, want its one problem and no agent", p)
	}
	// node-00213 (i%10 == 3) has a down agent-0, and it is listed first.
	if _, p, _ := getAgents(t, base, "node=node-00213"); p == nil || len(p.Agents) != 4 || p.Agents[0].State != AgentDown {
		t.Errorf("node=node-00213: %+v, want 4 agents, the down one first", p)
	}

	for _, q := range []string{"state=bogus", "state=down,hung", "limit=0", "limit=1001", "limit=x", "cursor=!!", "cursor=" + url.QueryEscape(encodeCursor(&FleetAgent{State: "up"})[:3]), "agent=x"} {
		if code, _, body := getAgents(t, base, q); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want 400 with an error", q, code, body)
		}
	}
}

// Requests share a reading of the snapshots for MaxAge; past it, the next
// request starts a new reading and is served the old one while it is
// younger than MaxStale, or waits for the new one.
func TestFleetMaxAge(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	now := time.Now()
	var mu sync.Mutex
	clock := now
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	f := NewFleet(FleetOptions{Redis: c, MaxAge: 2 * time.Second, MaxStale: 10 * time.Second, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
	ctx := context.Background()
	total := func() int {
		t.Helper()
		p, err := f.Query(ctx, FleetQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Counts.Total()
	}
	writeFleet(t, c, 3, 2, now)
	if n := total(); n != 7 {
		t.Fatalf("%d agents, want 7", n)
	}
	writeFleet(t, c, 5, 2, now)
	setClock(now.Add(time.Second))
	if n := total(); n != 7 {
		t.Errorf("within MaxAge: %d agents, want the reading's 7", n)
	}
	setClock(now.Add(3 * time.Second))
	if n := total(); n != 7 {
		t.Errorf("past MaxAge, within MaxStale: %d agents, want the old reading's 7 while a new one runs", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for total() != 11 {
		if time.Now().After(deadline) {
			t.Fatal("the new reading never came")
		}
		time.Sleep(10 * time.Millisecond)
	}
	writeFleet(t, c, 6, 2, now)
	setClock(now.Add(30 * time.Second))
	if n := total(); n != 13 {
		t.Errorf("past MaxStale: %d agents, want a new reading's 13", n)
	}
}

// medic serve shows its own node live, whatever its snapshot says.
func TestFleetLive(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	now := time.Now()
	writeFleet(t, c, 3, 2, now) // node-00000..2, agent-0 and agent-1, all up but node-00002/agent-1
	live := exporter.NodeState{Node: "node-00001", Updated: now, Agents: []exporter.AgentState{{Name: "agent-0", Up: false}, {Name: "fresh", Up: true}}}
	f := NewFleet(FleetOptions{Redis: c, MaxAge: -1, Live: func() (exporter.NodeState, bool) { return live, true }})
	p, err := f.Query(context.Background(), FleetQuery{})
	if err != nil {
		t.Fatal(err)
	}
	got := keysOf(p.Agents)
	want := []string{"down node-00001/agent-0", "failing node-00002/agent-1", "up node-00000/agent-0", "up node-00000/agent-1",
		"up node-00001/fresh", "up node-00002/agent-0", "up zz-old/stuck"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if p.Nodes.Total != 6 || p.Counts != (FleetCounts{Down: 1, Failing: 1, Up: 5}) {
		t.Errorf("nodes %+v counts %+v", p.Nodes, p.Counts)
	}
	// A live node that has not written a snapshot yet is counted too.
	live.Node = "aa-new"
	if p, _ := f.Query(context.Background(), FleetQuery{}); p.Nodes.Total != 7 || p.Nodes.Reporting != 5 {
		t.Errorf("nodes %+v, want 7 (5 reporting)", p.Nodes)
	}
}

// The status page over 250 nodes (more than the 200 it used to cut at,
// silently): counts, problems first, the filter, and every page reachable
// by its "next" link; what is not listed is counted, with where to see it.
func TestStatusPageFleet(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	now := time.Now().UTC().Truncate(time.Second)
	fx := writeFleet(t, c, 250, 4, now)
	var silent []any
	for i := range 52 {
		silent = append(silent, fmt.Sprintf("zz-silent-%02d", i))
	}
	c.SAdd(context.Background(), "medic:nodes", silent...)
	h := NewStatusPage(StatusOptions{Redis: c, Refresh: -1, Now: func() time.Time { return now }})
	get := func(target string) string {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d", target, rec.Code)
		}
		return rec.Body.String()
	}
	rows := regexp.MustCompile(`<tr data-node="([^"]+)" data-agent="([^"]+)" class="(\w+)-row">\n<td><code>[^<]+</code>(?:<br>.*)?</td>\n<td><code>[^<]+</code>(?:<br>.*)?</td>\n<td><span class="pill \w+">(\w+)</span>`)
	agentsOf := func(page string) []string {
		var out []string
		for _, m := range rows.FindAllStringSubmatch(page, -1) {
			out = append(out, m[4]+" "+m[1]+"/"+m[2])
		}
		return out
	}
	nextLink := regexp.MustCompile(`<a href="([^"]+)" rel="next">`)

	page := get("/")
	for _, w := range []string{
		`data-count="down">25 down</a>`, `data-count="failing">86 failing</a>`, `data-count="up">890 up</a>`,
		`of 1001 agents on 251 reporting nodes`, `53 nodes silent`, `data-count="unreadable">1 unreadable`, `data-count="old">1 with an old snapshot`,
		`<b>1–100</b> of 1001 agents, problems first`,
		// 55 node problems: 50 listed, the rest counted with where to see them
		`… and 5 more nodes with a problem, not listed here: <a href="/api/v1/agents?limit=1"><code>GET /api/v1/agents?limit=1</code></a> lists every one`,
	} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	if n := strings.Count(page, "data-node-problem="); n != maxProblemsShown {
		t.Errorf("%d node problems listed, want %d", n, maxProblemsShown)
	}
	// Every page by its next link: every agent once, problems first.
	var got []string
	for target, pages := "/", 0; ; pages++ {
		if pages > 11 {
			t.Fatal("more than 11 pages of 100 for 1001 agents")
		}
		page := get(target)
		got = append(got, agentsOf(page)...)
		if from := len(got) - len(agentsOf(page)) + 1; !strings.Contains(page, fmt.Sprintf("<b>%d–%d</b> of 1001 agents", from, len(got))) {
			t.Errorf("page %d does not say it shows %d–%d of 1001", pages, from, len(got))
		}
		if pages > 0 && !strings.Contains(page, `">first page</a>`) {
			t.Errorf("page %d has no link to the first", pages)
		}
		m := nextLink.FindStringSubmatch(page)
		if m == nil {
			break
		}
		// A browser does not send the fragment.
		target, _, _ = strings.Cut(html.UnescapeString(m[1]), "#")
	}
	var want []string
	for _, a := range fx.all {
		want = append(want, a.State+" "+a.Node+"/"+a.Name)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("agents over every page (-want +got):\n%s", diff)
	}

	// The filter.
	page = get("/?node=node-00243")
	if got := agentsOf(page); !slices.Equal(got, []string{"down node-00243/agent-0", "up node-00243/agent-1", "up node-00243/agent-2", "up node-00243/agent-3"}) {
		t.Errorf("node=node-00243: %v", got)
	}
	if !strings.Contains(page, `<b>1–4</b> of 4 agents matching on node <code>node-00243</code>`) || !strings.Contains(page, `value="node-00243"`) {
		t.Errorf("node=node-00243: the page does not say what it filters")
	}
	page = get("/?state=down,failing&limit=1000")
	if got := agentsOf(page); len(got) != 111 || !strings.HasPrefix(got[0], "down ") || !strings.HasPrefix(got[110], "failing ") {
		t.Errorf("state=down,failing: %d agents, want 111 down then failing", len(got))
	}
	if !strings.Contains(page, `<option value="down,failing" selected>`) {
		t.Errorf("state=down,failing is not selected in the form")
	}
	page = get("/?state=hung")
	if !strings.Contains(page, `state &#34;hung&#34;: want down, failing, up (or several, comma-separated); showing every agent`) || len(agentsOf(page)) != 100 {
		t.Errorf("state=hung: no error shown, or not the fleet")
	}
}

// On Redis Cluster the snapshots are in many slots: the reading's
// pipelines of GETs are split by slot, and nothing is missed.
func TestFleetOnCluster(t *testing.T) {
	c := clusterClient(t)
	now := time.Now()
	fx := writeFleet(t, c, 300, 4, now)
	f := NewFleet(FleetOptions{Redis: c, MaxAge: -1})
	p, err := f.Query(context.Background(), FleetQuery{Limit: jobs.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	if p.Counts != fx.counts || p.Nodes != fx.nodes || p.Total != len(fx.all) {
		t.Errorf("counts %+v nodes %+v total %d, want %+v %+v %d", p.Counts, p.Nodes, p.Total, fx.counts, fx.nodes, len(fx.all))
	}
	if diff := cmp.Diff(keysOf(fx.all[:jobs.MaxListLimit]), keysOf(p.Agents)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
