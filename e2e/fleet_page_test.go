package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/redistest"
)

// TestFleetStatusPage opens the status page of the built `medic bridge`
// over 300 nodes (the page used to show the first 200 only, silently) in
// a real browser: the fleet-wide counts, problems first, a node past the
// 200th through the filter; it saves screenshots to e2e/artifacts/.
func TestFleetStatusPage(t *testing.T) {
	harness.LookPath(t, "chromium") // make deps installs it; missing fails the test
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	pub := newFleetPublishers(300, 4)
	if err := pub.writeAll(ctx, rs.Client()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "estate.hcl")
	if err := os.WriteFile(cfg, []byte(ingestHCL()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, tokenFile := harness.Token(t)
	br := harness.StartBridge(t, harness.BridgeOptions{Medic: bins.Medic, ConfigPath: cfg, RedisURL: rs.URL(), TokenFile: tokenFile, LogDir: dir})
	base := authProxy(t, br)

	// pub: node i%100 == 3 has agent-0 down, i%50 == 7 agent-1 failing.
	dom := chromium(t, base+"/?refresh=0", "--dump-dom")
	for _, want := range []string{
		`data-count="down">` + strconv.Itoa(pub.down) + ` down</a>`,
		`data-count="failing">` + strconv.Itoa(pub.failing) + ` failing</a>`,
		`data-count="up">` + strconv.Itoa(1200-pub.down-pub.failing) + ` up</a>`,
		`of 1200 agents on 300 reporting nodes`,
		`<b>1–100</b> of 1200 agents, problems first`,
		`rel="next"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("status page DOM lacks %s", want)
		}
	}
	// Problems first: the first rows are the down agents, then the failing ones.
	if i, j, k := strings.Index(dom, `data-node="node-00003" data-agent="agent-0"`), strings.Index(dom, `data-node="node-00007" data-agent="agent-1"`), strings.Index(dom, `class="ok-row"`); i < 0 || j < i || k < j {
		t.Errorf("not down, then failing, then up: %d %d %d", i, j, k)
	}
	filtered := chromium(t, base+"/?refresh=0&node=node-00299", "--dump-dom")
	if !strings.Contains(filtered, `data-node="node-00299" data-agent="agent-3"`) || !strings.Contains(filtered, `of 4 agents matching on node <code>node-00299</code>`) {
		t.Errorf("node-00299 (past the old cut at 200) not shown when filtered")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(root, "e2e", "artifacts")
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, url := range map[string]string{"fleet-status-page.png": base + "/?refresh=0", "fleet-status-page-filtered.png": base + "/?refresh=0&state=down,failing"} {
		shot := filepath.Join(art, name)
		os.Remove(shot)
		chromium(t, url, "--screenshot="+shot)
		st, err := os.Stat(shot)
		if err != nil || st.Size() < 10<<10 {
			t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, sizeOf(st))
		}
		t.Logf("screenshot: %s", shot)
	}
}
