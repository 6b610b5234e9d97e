package bridge

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/runbooks"
)

func newServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// operatorBridge is a test bridge with a controls store on its Redis and
// medic_paused registered, as app wires it.
func operatorBridge(t *testing.T, mod func(*Options)) (*testBridge, *controls.Store) {
	t.Helper()
	var ctl *controls.Store
	tb := startTestBridge(t, testHCL, func(o *Options) {
		ctl = controls.New(o.Client, "")
		o.Controls = ctl
		if mod != nil {
			mod(o)
		}
	})
	tb.reg.MustRegister(controls.NewPausedCollector(ctl, func() []string { return []string{"recover", "lost"} }, nil))
	return tb, ctl
}

// call sends a JSON request with the test token (auth "" sends none) and
// returns the status and the decoded answer.
func (tb *testBridge) call(t *testing.T, method, path, auth, body string) (int, map[string]any) {
	t.Helper()
	hdr := http.Header{"Content-Type": {"application/json"}}
	if auth != "" {
		hdr.Set("Authorization", auth)
	}
	code, _, data := do(t, nil, method, tb.srv.URL+path, hdr, body)
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %q", method, path, code, data)
	}
	return code, m
}

func TestPauseAPI(t *testing.T) {
	tb, ctl := operatorBridge(t, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken

	for _, tc := range []struct {
		name, auth, body string
		code             int
		err              string
	}{
		{"no token", "", `{"runbook":"recover"}`, 401, "unauthenticated"},
		{"unknown runbook", bearer, `{"runbook":"recovr"}`, 400, `runbook "recovr" is not configured; configured: lost, recover`},
		{"bad duration", bearer, `{"runbook":"recover","for":"soon"}`, 400, `for: "soon" is not a duration`},
		{"negative duration", bearer, `{"for":"-1h"}`, 400, "for: want a positive duration"},
		{"misspelt field", bearer, `{"runbook":"recover","reasn":"x"}`, 400, `unknown field "reasn"`},
		{"not json", bearer, `{"runbook":`, 400, "body:"},
		{"control characters", bearer, `{"reason":"a\u0007b"}`, 400, "reason: no control characters"},
		{"over the limit", bearer, `{"reason":"` + strings.Repeat("x", 20<<10) + `"}`, 413, "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := tb.call(t, "POST", "/api/v1/pause", tc.auth, tc.body)
			if code != tc.code || !strings.Contains(m["error"].(string), tc.err) {
				t.Errorf("= %d %v, want %d with error containing %q", code, m, tc.code, tc.err)
			}
		})
	}
	if ps, _ := ctl.Pauses(ctx, time.Now()); len(ps) != 0 {
		t.Fatalf("refused requests paused something: %v", ps)
	}

	// A runbook for an hour, by name; then every runbook until resumed.
	code, m := tb.call(t, "POST", "/api/v1/pause", bearer, `{"runbook":"recover","for":"1h","reason":"deploy freeze","by":"alice"}`)
	if code != 200 || m["runbook"] != "recover" || m["by"] != "alice" || m["reason"] != "deploy freeze" || m["until"] == nil {
		t.Fatalf("pause recover: %d %v", code, m)
	}
	p, err := ctl.Paused(ctx, "recover", time.Now())
	if err != nil || p == nil || p.By != "alice" || p.Until.Sub(p.Since) != time.Hour {
		t.Fatalf("controls.Paused(recover) = %+v, %v: want alice's one-hour pause", p, err)
	}
	if p, _ := ctl.Paused(ctx, "lost", time.Now()); p != nil {
		t.Fatalf("lost is paused too: %+v", p)
	}
	if err := testutil.GatherAndCompare(tb.reg, strings.NewReader(`
# HELP medic_paused Whether new runs of a runbook are paused (1) or not (0), by its own pause or the global one; runbook="*" is the global pause.
# TYPE medic_paused gauge
medic_paused{runbook="*"} 0
medic_paused{runbook="lost"} 0
medic_paused{runbook="recover"} 1
`), "medic_paused"); err != nil {
		t.Error(err)
	}
	code, m = tb.call(t, "POST", "/api/v1/pause", bearer, "")
	if code != 200 || m["runbook"] != "" || m["by"] != "token" || m["until"] != nil {
		t.Fatalf("global pause: %d %v", code, m)
	}
	if p, _ := ctl.Paused(ctx, "lost", time.Now()); p == nil || p.Runbook != "" {
		t.Fatalf("after the global pause, lost is not paused by it: %+v", p)
	}

	// Reads need the token too.
	if code, _ := tb.call(t, "GET", "/api/v1/pause", "", ""); code != 401 {
		t.Errorf("GET /api/v1/pause without token = %d", code)
	}
	code, m = tb.call(t, "GET", "/api/v1/pause", bearer, "")
	if ps, _ := m["pauses"].([]any); code != 200 || len(ps) != 2 || ps[0].(map[string]any)["runbook"] != "" {
		t.Fatalf("GET /api/v1/pause = %d %v, want the global pause first, then recover", code, m)
	}

	// Resume: the global one first, with the rest in the answer; again: 404.
	if code, _ := tb.call(t, "DELETE", "/api/v1/pause", "", ""); code != 401 {
		t.Errorf("DELETE without token = %d", code)
	}
	code, m = tb.call(t, "DELETE", "/api/v1/pause", bearer, "")
	if ps, _ := m["pauses"].([]any); code != 200 || m["resumed"] != "*" || len(ps) != 1 {
		t.Fatalf("DELETE /api/v1/pause = %d %v, want the global pause lifted, recover left", code, m)
	}
	code, m = tb.call(t, "DELETE", "/api/v1/pause", bearer, "")
	if code != 404 || !strings.Contains(m["error"].(string), "the global pause (every runbook) is not paused") {
		t.Errorf("DELETE again = %d %v, want 404", code, m)
	}
	if code, m := tb.call(t, "DELETE", "/api/v1/pause?rnbook=recover", bearer, ""); code != 400 {
		t.Errorf("DELETE with a misspelt parameter = %d %v, want 400", code, m)
	}
	code, m = tb.call(t, "DELETE", "/api/v1/pause?runbook=recover", bearer, "")
	if ps, _ := m["pauses"].([]any); code != 200 || m["resumed"] != "recover" || len(ps) != 0 {
		t.Fatalf("DELETE ?runbook=recover = %d %v", code, m)
	}
	if ps, _ := ctl.Pauses(ctx, time.Now()); len(ps) != 0 {
		t.Fatalf("pauses left: %v", ps)
	}
}

func TestApprovalAPI(t *testing.T) {
	tb, ctl := operatorBridge(t, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	now := time.Now()
	for id, deadline := range map[string]time.Time{"run-a": now.Add(time.Hour), "run-b": now.Add(time.Hour), "run-late": now.Add(-time.Second)} {
		if err := ctl.Request(ctx, id, deadline); err != nil {
			t.Fatal(err)
		}
	}
	if code, m := tb.call(t, "POST", "/api/v1/runs/run-a/approve", "", ""); code != 401 {
		t.Fatalf("approve without token = %d %v", code, m)
	}
	code, m := tb.call(t, "POST", "/api/v1/runs/run-a/approve", bearer, `{"by":"alice","reason":"looks right"}`)
	if code != 200 || m["approve"] != true || m["by"] != "alice" || m["run_id"] != "run-a" {
		t.Fatalf("approve = %d %v", code, m)
	}
	d, err := ctl.Decision(ctx, "run-a")
	if err != nil || d == nil {
		t.Fatalf("stored decision: %v %v", d, err)
	}
	if diff := cmp.Diff(controls.Decision{RunID: "run-a", Approve: true, By: "alice", Reason: "looks right"}, *d, cmpIgnoreAt); diff != "" {
		t.Errorf("stored decision -want +got:\n%s", diff)
	}
	// The first decision stands.
	code, m = tb.call(t, "POST", "/api/v1/runs/run-a/reject", bearer, "")
	if prev, _ := m["decision"].(map[string]any); code != 409 || prev["by"] != "alice" || !strings.Contains(m["error"].(string), "already approved by alice") {
		t.Errorf("reject after approve = %d %v, want 409 naming alice's approval", code, m)
	}
	// Without a name, a token holder is "token".
	code, m = tb.call(t, "POST", "/api/v1/runs/run-b/reject", bearer, "")
	if code != 200 || m["approve"] != false || m["by"] != "token" {
		t.Errorf("reject = %d %v", code, m)
	}
	if d, _ := ctl.Decision(ctx, "run-b"); d == nil || d.Approve || d.By != "token" {
		t.Errorf("stored rejection: %+v", d)
	}
	for _, id := range []string{"run-late", "never-asked", "bad%7Bid%7D"} {
		if code, m := tb.call(t, "POST", "/api/v1/runs/"+id+"/approve", bearer, ""); code != 404 {
			t.Errorf("approve %s = %d %v, want 404", id, code, m)
		}
	}
	if pending, _ := ctl.Pending(ctx, time.Now()); len(pending) != 0 {
		t.Errorf("still pending: %v", pending)
	}
}

var cmpIgnoreAt = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".At" }, cmp.Ignore())

// Behind a web config with basic-auth users, the verified user name is
// what is recorded, whatever the body says.
func TestDecisionRecordsWebUser(t *testing.T) {
	tb, ctl := operatorBridge(t, func(o *Options) { o.Token, o.WebUsers = "", true })
	ctx := context.Background()
	ctl.Request(ctx, "run-w", time.Now().Add(time.Hour))
	req, _ := http.NewRequest("POST", tb.srv.URL+"/api/v1/runs/run-w/approve", strings.NewReader(`{"by":"mallory"}`))
	req.SetBasicAuth("bob", "pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d, _ := ctl.Decision(ctx, "run-w"); resp.StatusCode != 200 || d == nil || d.By != "bob" {
		t.Fatalf("approve as bob: %d, decision %+v", resp.StatusCode, d)
	}
}

func TestResetAPI(t *testing.T) {
	tb, ctl := operatorBridge(t, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	now := time.Now()
	ctl.Circuit(ctx, "n1", "a1", 1, time.Hour, now, "r1")
	if open, _, _ := ctl.Circuit(ctx, "n1", "a1", 1, time.Hour, now, "r2"); !open {
		t.Fatal("circuit not open after its one run")
	}
	for _, tc := range []struct {
		path, auth string
		code       int
	}{
		{"/api/v1/agents/n1/a1/reset", "", 401},
		{"/api/v1/agents/n1/ghost/reset", bearer, 404},
		{"/api/v1/agents/n2/a1/reset", bearer, 404}, // a1 runs on n1
		{"/api/v1/agents/n1/a1/reset", bearer, 200},
		{"/api/v1/agents/n1/a1/reset", bearer, 200}, // idempotent
		{"/api/v1/agents/anywhere/floating/reset", bearer, 200},
	} {
		if code, m := tb.call(t, "POST", tc.path, tc.auth, ""); code != tc.code {
			t.Errorf("POST %s = %d %v, want %d", tc.path, code, m, tc.code)
		}
	}
	if open, _, _ := ctl.Circuit(ctx, "n1", "a1", 1, time.Hour, now, "r3"); open {
		t.Error("the circuit is still open after the reset")
	}
}

// The status page shows the pauses with a resume button, the runs
// waiting for approval with approve and reject buttons carrying the
// session's CSRF token, and each new outcome in its own colour with the
// reason; its buttons work.
func TestStatusPageControls(t *testing.T) {
	tb, ctl := operatorBridge(t, nil)
	ctx := context.Background()
	now := time.Now()
	store := tb.Store()
	for _, r := range []*runbooks.RunRecord{
		{ID: "run-pending-1", Runbook: "recover", Agent: "a1", Node: "n1", Outcome: runbooks.OutcomePendingApproval,
			Reason: "approve mode: waiting for an operator", Causes: []string{"memory"}, Started: now.Add(-time.Minute),
			Steps: []runbooks.Step{{Name: "liveness", OK: true, Detail: "pid 4242 alive"}, {Name: "probe", Detail: "GET http://127.0.0.1:8080/healthz: 500"}, {Name: "diagnose", OK: true, Detail: "memory 0.91 > 0.80"}}},
		{ID: "run-paused", Runbook: "recover", Agent: "a1", Node: "n1", Outcome: runbooks.OutcomePaused, Reason: "paused by alice: deploy", Started: now.Add(-2 * time.Minute)},
		{ID: "run-limited", Runbook: "recover", Agent: "a1", Outcome: runbooks.OutcomeLimited, Reason: "concurrency 2 of 2 in use", Started: now.Add(-3 * time.Minute)},
		{ID: "run-circuit", Runbook: "recover", Agent: "a1", Outcome: runbooks.OutcomeCircuitOpen, Reason: "5 runs in 1h", Started: now.Add(-4 * time.Minute)},
		{ID: "run-shadow", Runbook: "recover", Agent: "a1", Outcome: runbooks.OutcomeShadowed, Reason: "would restart", Started: now.Add(-5 * time.Minute),
			Steps: []runbooks.Step{{Name: "probe", Detail: "connection refused"}, {Name: "restart", OK: true, Detail: "would restart the agent (probe failed) (shadow mode)"}, {Name: "verify", OK: true, Detail: "would verify with the probe up to 1 times (shadow mode)"}}},
		{ID: "run-rejected", Runbook: "recover", Agent: "a1", Outcome: runbooks.OutcomeRejected, Reason: "rejected by bob", Started: now.Add(-6 * time.Minute)},
	} {
		if err := store.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ctl.Request(ctx, "run-pending-1", now.Add(time.Hour))
	ctl.Request(ctx, "run-pending-old", now.Add(time.Hour)) // no record: shown by its id
	ctl.Pause(ctx, controls.Pause{Runbook: "recover", Since: now, Until: now.Add(time.Hour), By: "alice", Reason: "deploy"})

	mux := http.NewServeMux()
	tb.Register(mux)
	mux.Handle(StatusPagePattern, tb.Page(NewStatusPage(StatusOptions{Runs: store, Controls: ctl, Refresh: -1,
		Runbooks: func() []string { return []string{"recover", "lost"} },
		Plan:     func(rec *runbooks.RunRecord) []string { return PlannedSteps(tb.cfg, rec) }})))
	srv := newServer(t, mux)
	sess := tb.newSession("carol", 0, now.Add(time.Hour))
	cookie := http.Header{"Cookie": {SessionCookie + "=" + sess}}
	csrf := tb.mac("csrf", sess)

	code, _, page := do(t, nil, "GET", srv+"/", cookie, "")
	if code != 200 {
		t.Fatalf("page: %d", code)
	}
	for _, w := range []string{
		`signed in as <b>carol</b>`,
		`<div class="banner pause-banner" role="alert" data-pause="recover"><span class="pause-title">Remediation paused</span>`,
		// a pending approval says why it is asked and what approving does
		`<b>Why:</b> <span class="pill ok">liveness</span> <span class="small">pid 4242 alive</span> <span class="pill bad">probe</span> <span class="small">GET http://127.0.0.1:8080/healthz: 500</span>`,
		`<b>Approving will run:</b><ol><li>restart a1</li><li>verify with the probe, up to 1 times</li></ol>`,
		// a shadow run's steps did not run: no green ok on them
		`<span class="pill would" title="shadow mode: recorded, not executed">would run</span></td>
<td><code>restart</code>`,
		`since ` + now.UTC().Format("2006-01-02 15:04:05Z") + ` by alice, until `, `: deploy`,
		`<form class="inline" method="post" action="/api/v1/resume"><input type="hidden" name="runbook" value="recover"><input type="hidden" name="csrf" value="` + csrf + `">`,
		`Waiting for approval <span class="pill pending">2</span>`,
		`data-pending="run-pending-1"`, `data-pending="run-pending-old"`, `causes: memory`,
		`<form class="decide" method="post" action="/api/v1/runs/run-pending-1/approve"><input type="hidden" name="csrf" value="` + csrf + `">`,
		`formaction="/api/v1/runs/run-pending-1/reject"`,
		`<span class="pill pending" title="waiting for an operator to approve or reject it">pending_approval</span>`,
		`<span class="pill held" title="remediation is paused by an operator: nothing was done">paused</span>`,
		`<span class="pill held" title="shadow mode: what would have been done was recorded, nothing was done">shadowed</span>`,
		`<span class="pill warn" title="the runbook&#39;s fleet-wide concurrency limit held it past its wait or queue: escalated">limited</span>`,
		`<span class="pill bad" title="the agent&#39;s circuit breaker is open`, `>circuit_open</span>`,
		`<span class="pill warn" title="an operator rejected the run: nothing was done">rejected</span>`,
		`<br><span class="small">paused by alice: deploy</span>`, `concurrency 2 of 2 in use`, `5 runs in 1h`, `would restart`, `rejected by bob`,
	} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}

	// The buttons, as a browser posts them: without the CSRF token 403,
	// with it a redirect back to the page and the decision stored.
	form := http.Header{"Cookie": cookie["Cookie"], "Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {srv}, "Sec-Fetch-Site": {"same-origin"}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if code, _, body := do(t, noRedirect, "POST", srv+"/api/v1/runs/run-pending-1/reject", form, url.Values{"reason": {"no"}}.Encode()); code != 403 {
		t.Errorf("reject without CSRF token = %d %q, want 403", code, body)
	}
	code, h, body := do(t, noRedirect, "POST", srv+"/api/v1/runs/run-pending-1/reject", form, url.Values{"reason": {"not now"}, "csrf": {csrf}}.Encode())
	if code != 303 || h.Get("Location") != "/" {
		t.Errorf("reject from the page = %d %q %q, want 303 to /", code, h.Get("Location"), body)
	}
	if d, _ := ctl.Decision(ctx, "run-pending-1"); d == nil || d.Approve || d.By != "carol" || d.Reason != "not now" {
		t.Errorf("decision from the page: %+v, want carol's rejection", d)
	}
	code, _, body = do(t, noRedirect, "POST", srv+"/api/v1/runs/run-pending-1/approve", form, url.Values{"csrf": {csrf}}.Encode())
	if code != 409 || !strings.Contains(body, "already rejected by carol") {
		t.Errorf("approve after reject from the page = %d %q, want 409 as text", code, body)
	}
	code, _, _ = do(t, noRedirect, "POST", srv+"/api/v1/resume", form, url.Values{"runbook": {"recover"}, "csrf": {csrf}}.Encode())
	if p, _ := ctl.Paused(ctx, "recover", time.Now()); code != 303 || p != nil {
		t.Errorf("resume from the page = %d, pause %+v", code, p)
	}
	// The pause form: every runbook, for 30 minutes, by the signed-in name.
	code, _, body = do(t, noRedirect, "POST", srv+"/api/v1/pause", form, url.Values{"runbook": {""}, "for": {"30m"}, "reason": {"incident"}, "csrf": {csrf}}.Encode())
	p, _ := ctl.Paused(ctx, "lost", time.Now())
	if code != 303 || p == nil || p.Runbook != "" || p.By != "carol" || p.Reason != "incident" || p.Until.Sub(p.Since) != 30*time.Minute {
		t.Errorf("pause from the page = %d %q, pause %+v", code, body, p)
	}
	code, _, body = do(t, noRedirect, "POST", srv+"/api/v1/pause", form, url.Values{"for": {"soon"}, "csrf": {csrf}}.Encode())
	if code != 400 || !strings.Contains(body, `for: "soon" is not a duration`) {
		t.Errorf("bad pause from the page = %d %q, want 400 as text", code, body)
	}
}

// curl -d sends JSON as application/x-www-form-urlencoded: the body is
// read as JSON all the same, and who and why are kept. A real form post
// (the status page's) is still a form, answered with a redirect.
func TestDecisionJSONWhateverContentType(t *testing.T) {
	tb, ctl := operatorBridge(t, nil)
	ctx := context.Background()
	for _, id := range []string{"run-j1", "run-j2", "run-f"} {
		if err := ctl.Request(ctx, id, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	curl := http.Header{"Authorization": {"Bearer " + testToken}, "Content-Type": {"application/x-www-form-urlencoded"}}
	code, _, body := do(t, noRedirect, "POST", tb.srv.URL+"/api/v1/runs/run-j1/approve", curl, `{"by":"you"}`)
	if code != 200 || !strings.Contains(body, `"by":"you"`) {
		t.Errorf("approve with curl -d = %d %s, want 200 JSON by you", code, body)
	}
	code, _, body = do(t, noRedirect, "POST", tb.srv.URL+"/api/v1/runs/run-j2/reject", curl, "\n  "+`{"by":"you","reason":"not now"}`)
	if code != 200 || !strings.Contains(body, `"reason":"not now"`) {
		t.Errorf("reject with curl -d = %d %s", code, body)
	}
	if d, _ := ctl.Decision(ctx, "run-j2"); d == nil || d.By != "you" || d.Reason != "not now" || d.Approve {
		t.Errorf("stored rejection %+v, want by you, reason kept", d)
	}
	code, _, body = do(t, noRedirect, "POST", tb.srv.URL+"/api/v1/runs/run-f/reject", curl, url.Values{"by": {"formuser"}, "reason": {"{braces} later"}}.Encode())
	if code != 303 {
		t.Errorf("form reject = %d %s, want 303", code, body)
	}
	if d, _ := ctl.Decision(ctx, "run-f"); d == nil || d.By != "formuser" || d.Reason != "{braces} later" {
		t.Errorf("stored form rejection %+v", d)
	}
	// The pause endpoint, too.
	code, _, body = do(t, noRedirect, "POST", tb.srv.URL+"/api/v1/pause", curl, `{"runbook":"recover","for":"5m","reason":"maintenance","by":"ops"}`)
	if code != 200 || !strings.Contains(body, `"maintenance"`) {
		t.Errorf("pause with curl -d = %d %s", code, body)
	}
}

// Deciding a run that has already ended is 409, naming its outcome, even
// when its approval request is still listed (issue 14 case 2: a pending
// approval whose run died with its node answered 200).
func TestDecideTerminalRun(t *testing.T) {
	tb, ctl := operatorBridge(t, nil)
	ctx := context.Background()
	bearer := "Bearer " + testToken
	for _, id := range []string{"run-ended", "run-waiting"} {
		if err := ctl.Request(ctx, id, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Store().Save(ctx, &runbooks.RunRecord{ID: "run-ended", Node: "n1", Outcome: runbooks.OutcomeEscalated, Reason: "still failing"}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Store().Save(ctx, &runbooks.RunRecord{ID: "run-waiting", Node: "n1", Outcome: runbooks.OutcomePendingApproval}); err != nil {
		t.Fatal(err)
	}
	code, m := tb.call(t, "POST", "/api/v1/runs/run-ended/approve", bearer, `{"by":"alice"}`)
	if code != 409 || m["outcome"] != runbooks.OutcomeEscalated || !strings.Contains(m["error"].(string), "already ended: escalated") {
		t.Errorf("approve of an ended run = %d %v, want 409 naming escalated", code, m)
	}
	if d, _ := ctl.Decision(ctx, "run-ended"); d != nil {
		t.Errorf("a decision was stored for an ended run: %+v", d)
	}
	if code, m := tb.call(t, "POST", "/api/v1/runs/run-waiting/reject", bearer, `{"by":"alice"}`); code != 200 {
		t.Errorf("reject of a waiting run = %d %v", code, m)
	}
}
