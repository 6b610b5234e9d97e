package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/runbooks"
)

// chromium runs Debian's headless chromium with one action flag
// (--dump-dom or --screenshot=FILE) on url and returns its stdout.
func chromium(t testing.TB, url string, action ...string) string {
	t.Helper()
	bin := harness.LookPath(t, "chromium")
	profile := t.TempDir()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile, "--window-size=1280,1600",
	}, action...)
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// Chromium forks renderers: give it a group of its own and take the
	// whole group down on timeout or when the test binary dies.
	cmd.SysProcAttr = procsig.ChildAttr()
	cmd.Cancel = func() error { return procsig.CmdGroup(cmd, syscall.SIGKILL) }
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", action, err, stderr.String())
	}
	return stdout.String()
}

// testStatusPage opens the bridge's status page in a real browser and
// checks that a real run of the scenarios shows up with its agent, saves a
// screenshot to e2e/artifacts/status-page.png.
func testStatusPage(t *testing.T, s *stack) {
	runs, err := s.runs("ta-kill")
	if err != nil || len(runs) == 0 {
		t.Fatalf("no run of ta-kill to look for: %v", err)
	}
	var run runbooks.RunRecord
	for _, r := range runs {
		if r.Outcome == runbooks.OutcomeRecovered {
			run = r
			break
		}
	}
	if run.ID == "" {
		t.Fatalf("no recovered run of ta-kill: %s", summarizeRuns(runs))
	}
	// Without the token the page is the login form, and shows no run.
	code, page, err := harness.Do(context.Background(), http.MethodGet, s.bridges[1].URL+"/", nil, nil)
	if err != nil || code != http.StatusUnauthorized || !strings.Contains(string(page), `action="/login"`) || strings.Contains(string(page), run.ID) {
		t.Errorf("status page without the token: %d %v, want 401 and the login form:\n%.500s", code, err, page)
	}
	url := authProxy(t, s.bridges[1]) + "/?refresh=0"
	dom := chromium(t, url, "--dump-dom")
	for _, want := range []string{
		`data-run="` + run.ID + `"`,
		`<code>ta-kill</code>`,
		"recovered",
		`data-agent="ta-kill"`, // the node's snapshot
		`data-pool="` + poolName + `"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("status page DOM lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	dir := filepath.Join(s.root, "e2e", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "status-page.png")
	os.Remove(shot)
	chromium(t, url, "--screenshot="+shot)
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 10<<10 {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, sizeOf(st))
	}
	t.Logf("status page screenshot: %s (%d bytes)", shot, st.Size())
}

// authProxy serves the bridge with its bearer token added to every
// request, as an authenticating reverse proxy in front of it would:
// headless chromium cannot send a header of its own.
func authProxy(t testing.TB, b *harness.Bridge) string {
	t.Helper()
	target, err := neturl.Parse(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(target)
	direct := p.Director
	p.Director = func(r *http.Request) {
		direct(r)
		for k, v := range b.Auth() {
			r.Header[k] = v
		}
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}
