package bridge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medicops/medic/runbooks"
)

// authServer is a test bridge with the status page mounted as the app
// mounts it, behind Page.
func authServer(t *testing.T, token string) *testBridge {
	t.Helper()
	tb := startTestBridge(t, testHCL, func(o *Options) { o.Token = token })
	mux := http.NewServeMux()
	tb.Register(mux)
	mux.Handle(StatusPagePattern, tb.Page(NewStatusPage(StatusOptions{Runs: tb.Store(), Refresh: -1})))
	tb.srv = httptest.NewServer(mux)
	t.Cleanup(tb.srv.Close)
	now := time.Now()
	if err := tb.Store().Save(context.Background(), &runbooks.RunRecord{
		ID: "run-secret", Runbook: "recover", Agent: "a1", Node: "n1", Outcome: runbooks.OutcomeRecovered,
		Started: now, Finished: now, Steps: []runbooks.Step{{Name: "repair", OK: true, Output: "password=hunter2"}},
	}); err != nil {
		t.Fatal(err)
	}
	return tb
}

func do(t *testing.T, c *http.Client, method, u string, hdr http.Header, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(data)
}

// With a token, reads need it too (run records hold script output);
// health, readiness and metrics-style endpoints stay open.
func TestProtectedReads(t *testing.T) {
	tb := authServer(t, testToken)
	bearer := http.Header{"Authorization": {"Bearer " + testToken}}
	wrong := http.Header{"Authorization": {"Bearer nope"}}
	for _, tc := range []struct {
		path string
		hdr  http.Header
		code int
		want string
	}{
		{"/api/v1/runs", nil, 401, "unauthenticated"},
		{"/api/v1/runs", wrong, 401, "unauthenticated"},
		{"/api/v1/runs", http.Header{"Authorization": {"Basic " + testToken}}, 401, "unauthenticated"},
		{"/api/v1/runs", bearer, 200, "password=hunter2"},
		{"/api/v1/runs/run-secret", nil, 401, "unauthenticated"},
		{"/api/v1/runs/run-secret", bearer, 200, "password=hunter2"},
		{"/", nil, 401, `<form method="post" action="/login">`},
		{"/", wrong, 401, `<form method="post" action="/login">`},
		{"/", bearer, 200, "password=hunter2"},
		{"/-/healthy", nil, 200, "Healthy."},
		{"/-/ready", nil, 200, "Ready."},
	} {
		code, h, body := do(t, nil, "GET", tb.srv.URL+tc.path, tc.hdr, "")
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s (%v) = %d %q, want %d containing %q", tc.path, tc.hdr, code, body, tc.code, tc.want)
		}
		if code == 401 {
			if got := h.Get("WWW-Authenticate"); got != `Bearer realm="medic"` {
				t.Errorf("GET %s: WWW-Authenticate %q", tc.path, got)
			}
			if strings.Contains(body, "hunter2") {
				t.Errorf("GET %s: a 401 shows the run's output", tc.path)
			}
		}
	}
}

// Loopback-only without a token or web config, reads stay open, as the
// webhook does.
func TestOpenWithoutAuth(t *testing.T) {
	tb := authServer(t, "")
	for _, p := range []string{"/api/v1/runs", "/api/v1/runs/run-secret", "/"} {
		if code, _, body := do(t, nil, "GET", tb.srv.URL+p, nil, ""); code != 200 || !strings.Contains(body, "hunter2") {
			t.Errorf("GET %s = %d %q, want 200 with the record", p, code, body)
		}
	}
	if code, _, _ := do(t, nil, "POST", tb.srv.URL+"/login", nil, ""); code != 405 && code != 404 {
		t.Errorf("POST /login without a token = %d, want no login endpoint", code)
	}
}

// A browser signs in with the token through the login form, gets a
// session cookie, and reads the page with it; a write with the cookie
// needs the page's CSRF token, and a cross-origin write is refused.
func TestLoginSession(t *testing.T) {
	tb := authServer(t, testToken)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

	code, _, body := do(t, browser, "POST", tb.srv.URL+"/login", form, url.Values{"token": {"wrong"}}.Encode())
	if code != 401 || !strings.Contains(body, "Wrong token.") {
		t.Fatalf("login with a wrong token = %d %q", code, body)
	}
	code, _, body = do(t, browser, "POST", tb.srv.URL+"/login", form, url.Values{"token": {testToken}, "name": {"alice"}}.Encode())
	if code != 200 || !strings.Contains(body, "hunter2") || !strings.Contains(body, "alice") {
		t.Fatalf("login, then the page: %d %q", code, body)
	}
	u, _ := url.Parse(tb.srv.URL)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != SessionCookie || strings.Contains(cookies[0].Value, testToken) {
		t.Fatalf("cookies %v: want one session cookie without the token in it", cookies)
	}
	if code, _, body := do(t, browser, "GET", tb.srv.URL+"/api/v1/runs", nil, ""); code != 200 || !strings.Contains(body, "hunter2") {
		t.Errorf("GET /api/v1/runs with the session = %d %q", code, body)
	}

	// A write with the cookie but without the CSRF token is refused …
	if code, _, body := do(t, browser, "POST", tb.srv.URL+"/-/reload", form, ""); code != 403 || !strings.Contains(body, "CSRF") {
		t.Errorf("POST with the session and no CSRF token = %d %q, want 403", code, body)
	}
	// … and so is one a browser marks cross-origin, token or not.
	xo := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Authorization": {"Bearer " + testToken}}
	if code, _, body := do(t, nil, "POST", tb.srv.URL+"/api/v1/webhook", xo, `{"alerts":[]}`); code != 403 {
		t.Errorf("cross-origin POST = %d %q, want 403", code, body)
	}
	xo = http.Header{"Origin": {"https://evil.example"}, "Authorization": {"Bearer " + testToken}}
	if code, _, body := do(t, nil, "POST", tb.srv.URL+"/api/v1/webhook", xo, `{"alerts":[]}`); code != 403 {
		t.Errorf("POST with a foreign Origin = %d %q, want 403", code, body)
	}

	// A forged, expired or differently-keyed cookie is no session.
	other := New(Options{Client: tb.c, Token: "another-token", Config: tb.opts.Config})
	for name, v := range map[string]string{
		"garbage":   "v1.x.y.z",
		"expired":   tb.newSession("alice", 0, time.Now().Add(-time.Minute)),
		"other key": other.newSession("alice", 0, time.Now().Add(time.Hour)),
		"tampered":  strings.Replace(tb.newSession("alice", 0, time.Now().Add(time.Hour)), "v2.0", "v2.9", 1),
		"old epoch": tb.newSession("alice", -1, time.Now().Add(time.Hour)),
	} {
		hdr := http.Header{"Cookie": {SessionCookie + "=" + v}}
		if code, _, _ := do(t, nil, "GET", tb.srv.URL+"/api/v1/runs", hdr, ""); code != 401 {
			t.Errorf("%s cookie: GET = %d, want 401", name, code)
		}
	}

	// Signing out revokes the session, not only this browser's copy: a
	// cookie copied before is refused afterwards, on every replica.
	copied := http.Header{"Cookie": {SessionCookie + "=" + cookies[0].Value}}
	if code, _, _ := do(t, nil, "GET", tb.srv.URL+"/api/v1/runs", copied, ""); code != 200 {
		t.Fatalf("copied cookie before logout: GET = %d, want 200", code)
	}
	// A stranger's logout (no session) revokes nothing.
	if code, _, _ := do(t, nil, "POST", tb.srv.URL+"/logout", nil, ""); code != 303 && code != 401 {
		t.Errorf("stranger's logout = %d", code)
	}
	if code, _, _ := do(t, nil, "GET", tb.srv.URL+"/api/v1/runs", copied, ""); code != 200 {
		t.Fatalf("copied cookie after a stranger's logout: GET = %d, want 200", code)
	}
	code, _, body = do(t, browser, "POST", tb.srv.URL+"/logout", nil, "")
	if code != 401 || !strings.Contains(body, `action="/login"`) {
		t.Errorf("after logout the page = %d, want 401 and the login form", code)
	}
	replica := httptest.NewServer(func() http.Handler {
		b := New(Options{Client: tb.c, Token: testToken, Config: tb.opts.Config})
		mux := http.NewServeMux()
		b.Register(mux)
		return mux
	}())
	defer replica.Close()
	for _, base := range []string{tb.srv.URL, replica.URL} {
		if code, _, _ := do(t, nil, "GET", base+"/api/v1/runs", copied, ""); code != 401 {
			t.Errorf("revoked cookie after logout at %s: GET = %d, want 401", base, code)
		}
	}
	if v, _ := tb.c.Get(context.Background(), "medic:{auth}:session_epoch").Int(); v != 1 {
		t.Errorf("session epoch = %d, want 1", v)
	}
	// Signing in again works.
	code, _, _ = do(t, browser, "POST", tb.srv.URL+"/login", form, url.Values{"token": {testToken}, "name": {"alice"}}.Encode())
	if code != 200 {
		t.Errorf("login after logout = %d", code)
	}
}

// Failed logins are limited for the whole bridge: past the burst, every
// login is 429 with Retry-After, the right token too (a guesser learns
// nothing), while the bearer token still reads the API.
func TestFailedLoginsLimited(t *testing.T) {
	tb := authServer(t, testToken)
	var now atomic.Int64 // unix ns: the handlers read it on the server's goroutines
	now.Store(time.Now().UnixNano())
	tb.Bridge.opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	var wg sync.WaitGroup
	codes := make(chan int, loginFailBurst+5)
	for i := 0; i < loginFailBurst+5; i++ {
		wg.Go(func() {
			code, _, _ := do(t, nil, "POST", tb.srv.URL+"/login", form, url.Values{"token": {fmt.Sprint("guess", i)}}.Encode())
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[401] > loginFailBurst || n[429] < 5 {
		t.Errorf("%d concurrent wrong logins: %v, want at most %d 401s and the rest 429", loginFailBurst+5, n, loginFailBurst)
	}
	code, hdr, _ := do(t, nil, "POST", tb.srv.URL+"/login", form, url.Values{"token": {testToken}}.Encode())
	if code != 429 || hdr.Get("Retry-After") == "" {
		t.Errorf("right token while limited = %d (Retry-After %q), want 429", code, hdr.Get("Retry-After"))
	}
	if code, _, _ := do(t, nil, "GET", tb.srv.URL+"/api/v1/runs", http.Header{"Authorization": {"Bearer " + testToken}}, ""); code != 200 {
		t.Errorf("bearer read while logins are limited = %d", code)
	}
	now.Add(int64(2 * loginFailEvery))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if code, _, _ := do(t, noRedirect, "POST", tb.srv.URL+"/login", form, url.Values{"token": {testToken}}.Encode()); code != 303 {
		t.Errorf("right token after the limit drained = %d, want 303", code)
	}
}

func TestCallerWho(t *testing.T) {
	for _, tc := range []struct {
		c    *Caller
		by   string
		want string
	}{
		{&Caller{Via: "web", User: "bob"}, "alice", "bob"},
		{&Caller{Via: "token"}, "alice", "alice"},
		{&Caller{Via: "session", Name: "carol"}, "", "carol"},
		{&Caller{Via: "session", Name: "carol"}, "alice", "carol"},
		{&Caller{Via: "session"}, "alice", "alice"},
		{&Caller{Via: "token"}, "", "token"},
		{&Caller{Via: "web"}, "", "anonymous"},
		{nil, "", "anonymous"},
	} {
		if got := tc.c.Who(tc.by); got != tc.want {
			t.Errorf("%+v.Who(%q) = %q, want %q", tc.c, tc.by, got, tc.want)
		}
	}
}
