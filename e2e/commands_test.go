package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/testport"
)

// Every shell command that `medic demo` prints, and every one in the
// README's and docs/*.md's sh blocks, runs here verbatim with sh and the
// real curl, against a running `bin/medic demo` (as a process), with
// ports filled in the way the demo prints them. A block that needs what a
// test cannot provide (systemd, a real fleet, a token file in /etc) is
// preceded by NotRunnableMarker and a reason.

// NotRunnableMarker, on the line before a fenced block (blank lines
// between allowed), marks the block as not runnable by this test; the
// reason follows the colon and is required:
//
//	<!-- not-runnable: installs to /etc and starts long-running servers -->
const NotRunnableMarker = "<!-- not-runnable:"

// shellLangs are the fence languages whose blocks are shell commands.
var shellLangs = []string{"sh", "bash", "shell"}

// docBlock is one fenced shell block of a Markdown file.
type docBlock struct {
	File     string
	Line     int // of the opening fence
	Commands []string
	Skip     string // the not-runnable reason, if marked
}

var fence = regexp.MustCompile("^\\s*```\\s*([A-Za-z0-9_-]*)\\s*$")

// readBlocks returns the shell blocks of a Markdown file.
func readBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out []docBlock
	for i := 0; i < len(lines); i++ {
		m := fence.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		start := i
		lang := m[1]
		i++
		var body []string
		for ; i < len(lines) && !fence.MatchString(lines[i]); i++ {
			body = append(body, lines[i])
		}
		if !slices.Contains(shellLangs, lang) {
			continue
		}
		b := docBlock{File: path, Line: start + 1, Commands: commands(body)}
		for j := start - 1; j >= 0; j-- {
			l := strings.TrimSpace(lines[j])
			if l == "" {
				continue
			}
			if strings.HasPrefix(l, NotRunnableMarker) {
				b.Skip = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, NotRunnableMarker), "-->"))
				if b.Skip == "" {
					t.Errorf("%s:%d: a not-runnable marker must give its reason", path, j+1)
				}
			}
			break
		}
		out = append(out, b)
	}
	return out
}

// commands joins continued lines and drops blank and comment lines.
func commands(lines []string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		s := strings.TrimSpace(l)
		if cur.Len() == 0 && (s == "" || strings.HasPrefix(s, "#")) {
			continue
		}
		if strings.HasSuffix(s, "\\") {
			cur.WriteString(strings.TrimSuffix(s, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(s)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// demoCommands returns the commands `medic demo` printed, in order.
func demoCommands(text string) []string {
	i := strings.Index(text, "Try, in another terminal:")
	j := strings.Index(text, "Stop with Ctrl-C.")
	if i < 0 || j < i {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(text[i:j], "\n") {
		if strings.HasPrefix(l, "  ") { // headings are not indented
			lines = append(lines, l)
		}
	}
	return commands(lines)
}

// demo is a running `medic demo` process and what it printed.
type demo struct {
	Base  string            // http://127.0.0.1:PORT
	Text  string            // the instructions
	Ports map[string]string // agent name → 127.0.0.1:PORT, as printed
}

func startDemoProc(t *testing.T) *demo {
	t.Helper()
	addr := testport.Addr(t)
	p := harness.StartProc(t, "medic-demo", []string{bins.Medic, "demo", "--web.listen-address=" + addr}, harness.ProcOptions{})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.Log(), "Stop with Ctrl-C.") {
		if exited, err := p.Exited(); exited {
			t.Fatalf("medic demo exited: %v\n%s", err, p.Tail(4<<10))
		}
		if time.Now().After(deadline) {
			t.Fatalf("medic demo printed no instructions within 60 s:\n%s", p.Tail(4<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	log := p.Log()
	d := &demo{Base: "http://" + addr, Text: log[strings.Index(log, "medic demo is running"):], Ports: map[string]string{}}
	for _, m := range regexp.MustCompile(`(demo-[a-z0-9-]+)\s+(?:on\s+|\()(127\.0\.0\.1:\d+)`).FindAllStringSubmatch(d.Text, -1) {
		d.Ports[m[1]] = m[2]
	}
	for _, a := range []string{"demo-web", "demo-cfg-1", "demo-cfg-2", "demo-batch"} {
		if d.Ports[a] == "" {
			t.Fatalf("the demo does not say where %s listens:\n%s", a, d.Text)
		}
	}
	// The estate is up when its agents answer; a user reads the text first.
	for _, a := range []string{"demo-web", "demo-cfg-1", "demo-cfg-2", "demo-batch"} {
		waitHTTP(t, "http://"+d.Ports[a]+"/pid", 30*time.Second)
	}
	return d
}

func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %s: %v", url, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shell runs one command verbatim with sh, the medic under test first on
// PATH, in the repository's root (docs name files relative to it).
func shell(t *testing.T, cmdline string) (out string, code int) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+bins.Dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.SysProcAttr = procsig.ChildAttr()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", cmdline, err)
	}
	return buf.String(), code
}

// expect is what one command must do: exit with one of codes (default
// 0), and print what has (all of them); until re-runs a read until it
// does (a user re-reads the pool or the runs while something happens),
// up to 40 s.
type expect struct {
	match *regexp.Regexp
	codes []int
	has   []string
	until bool
	after func(t *testing.T) // waits for the effect a user would wait for
}

func (e expect) ok(out string, code int) bool {
	codes := e.codes
	if len(codes) == 0 {
		codes = []int{0}
	}
	if !slices.Contains(codes, code) {
		return false
	}
	for _, h := range e.has {
		if !strings.Contains(out, h) {
			return false
		}
	}
	return true
}

// runExpected runs cmd and checks it against the first expectation that
// matches it (or exit 0 when none does).
func runExpected(t *testing.T, where, cmd string, table []expect) string {
	t.Helper()
	e := expect{}
	for _, x := range table {
		if x.match.MatchString(cmd) {
			e = x
			break
		}
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		out, code := shell(t, cmd)
		if e.ok(out, code) {
			t.Logf("%s: ok (exit %d): %s", where, code, cmd)
			if e.after != nil {
				e.after(t)
			}
			return out
		}
		if !e.until || time.Now().After(deadline) {
			t.Fatalf("%s: %s\nexit %d, want %v with %q; output:\n%s", where, cmd, code, e.codes, e.has, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// curlDied: curl's exit when the server closes without answering (the
// agent's /die): 52 empty reply, or 56 a reset.
var curlDied = []int{52, 56}

// TestDemoCommandsVerbatim runs what `medic demo` prints, in order, with
// the RUN_ID of step 15 taken from step 14's answer as a user would.
func TestDemoCommandsVerbatim(t *testing.T) {
	harness.LookPath(t, "curl")
	d := startDemoProc(t)
	cmds := demoCommands(d.Text)
	if len(cmds) < 20 {
		t.Fatalf("found %d commands in the demo's instructions:\n%s", len(cmds), d.Text)
	}
	web, cfg1, cfg2, batch := d.Ports["demo-web"], d.Ports["demo-cfg-1"], d.Ports["demo-cfg-2"], d.Ports["demo-batch"]
	q := regexp.QuoteMeta
	runsOf := func(query string, n int) func(t *testing.T) {
		return func(t *testing.T) {
			deadline := time.Now().Add(40 * time.Second)
			for {
				out, _ := shell(t, "curl -s '"+d.Base+"/api/v1/runs?"+query+"'")
				if strings.Count(out, `"id":`) >= n {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("no %d runs for %s: %s", n, query, out)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
	}
	table := []expect{
		{match: regexp.MustCompile(`webhook .*"agent":"demo-web"`), has: []string{`"accepted":1`},
			after: runsOf("agent=demo-web&outcome=healthy", 1)},
		{match: regexp.MustCompile(q(web) + `/die`), codes: curlDied,
			after: runsOf("agent=demo-web&outcome=recovered", 1)},
		{match: regexp.MustCompile(q(web) + `/hang`), has: []string{"hanging"},
			after: runsOf("agent=demo-web&outcome=recovered", 2)},
		{match: regexp.MustCompile(q(web) + `/pid`), until: true, has: []string{"\n"}},
		{match: regexp.MustCompile(`runs\?agent=demo-web`), has: []string{`"outcome":"recovered"`}},
		{match: regexp.MustCompile(`for i in 1 2 3`), has: []string{`"seq":1`, `"seq":2`, `"seq":3`}},
		{match: regexp.MustCompile(`for i in 4 5 6`), has: []string{`"seq":4`, `"seq":5`, `"seq":6`}},
		{match: regexp.MustCompile(q(cfg1) + `/die`), codes: curlDied},
		{match: regexp.MustCompile(q(cfg2) + `/die`), codes: curlDied},
		{match: regexp.MustCompile(`/demo/devices/sw-01$`), until: true, has: []string{`"last_seq":6`, `"seq":6`}},
		{match: regexp.MustCompile(`webhook .*"agent":"demo-cfg-1"`), has: []string{`"accepted":1`},
			after: func(t *testing.T) { waitHTTP(t, "http://"+cfg1+"/pid", 40*time.Second) }},
		// Both agents must be healthy: a user re-runs a refused switchover.
		{match: regexp.MustCompile(`/switchover$`), until: true, has: []string{`"to":"demo-cfg-1"`}},
		{match: regexp.MustCompile(`-m 1 .*` + q(batch) + `/hang`), codes: []int{0, 28}},
		{match: regexp.MustCompile(`outcome=shadowed`), until: true, has: []string{`"outcome":"shadowed"`}},
		{match: regexp.MustCompile(`outcome=pending_approval`), until: true, has: []string{`"outcome":"pending_approval"`}},
		{match: regexp.MustCompile(`/approve`), has: []string{`"approve":true`, `"by":"you"`},
			after: runsOf("agent=demo-batch&outcome=recovered", 1)},
		{match: regexp.MustCompile(q(batch) + `/pid`), until: true, has: []string{"\n"}},
		{match: regexp.MustCompile(` pause `), has: []string{"paused"}},
		{match: regexp.MustCompile(` resume `)},
		{match: regexp.MustCompile(`webhook`), has: []string{`"accepted":1`}},
	}
	// Steps 6 and 8 read the same URL: first demo-cfg-1 is active, then,
	// after its kill, demo-cfg-2.
	poolReads := 0
	runID := ""
	for i, c := range cmds {
		where := fmt.Sprintf("demo command %d", i+1)
		if strings.HasSuffix(c, "/api/v1/pools/demo-switches") {
			want := `"agent":"demo-cfg-1"`
			if poolReads > 0 {
				want = `"agent":"demo-cfg-2"`
			}
			poolReads++
			runExpected(t, where, c, []expect{{match: regexp.MustCompile(`.`), until: true, has: []string{want}}})
			continue
		}
		if strings.Contains(c, "RUN_ID") {
			if runID == "" {
				t.Fatalf("%s uses RUN_ID, and no command before printed a pending run", c)
			}
			c = strings.ReplaceAll(c, "RUN_ID", runID)
		}
		out := runExpected(t, where, c, table)
		if strings.Contains(c, "outcome=pending_approval") {
			m := regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no run id in %s", out)
			}
			runID = m[1]
		}
	}
	if poolReads != 2 || runID == "" {
		t.Errorf("the demo's instructions changed: %d pool reads, run id %q; update this test", poolReads, runID)
	}
}

// TestDocCommandsVerbatim runs every shell block of README.md and
// docs/*.md not marked not runnable. Commands that talk to a bridge or
// node on 127.0.0.1:9095 or :9105 go to a running demo instead (PORT: the
// active config agent's port, as the demo prints it).
func TestDocCommandsVerbatim(t *testing.T) {
	harness.LookPath(t, "curl")
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	var blocks []docBlock
	for _, f := range files {
		blocks = append(blocks, readBlocks(t, f)...)
	}
	if len(blocks) < 5 {
		t.Fatalf("found %d shell blocks", len(blocks))
	}
	var d *demo
	ran := 0
	for _, b := range blocks {
		rel, _ := filepath.Rel(root, b.File)
		where := rel + ":" + strconv.Itoa(b.Line)
		if b.Skip != "" {
			t.Logf("%s: not runnable: %s", where, b.Skip)
			continue
		}
		usesDemo := false
		for _, c := range b.Commands {
			usesDemo = usesDemo || strings.Contains(c, "127.0.0.1:9095") || strings.Contains(c, "127.0.0.1:9105")
		}
		if !usesDemo {
			// A self-contained block runs as one script and must succeed.
			script := "set -e\n" + strings.Join(b.Commands, "\n")
			if out, code := shell(t, script); code != 0 {
				t.Errorf("%s: exit %d:\n%s\n%s", where, code, script, out)
			} else {
				t.Logf("%s: ok: %s", where, strings.Join(b.Commands, "; "))
			}
			ran++
			continue
		}
		if d == nil {
			d = startDemoProc(t)
		}
		host := strings.TrimPrefix(d.Base, "http://")
		fill := strings.NewReplacer("127.0.0.1:9095", host, "127.0.0.1:9105", host, "127.0.0.1:PORT", d.Ports["demo-cfg-1"])
		reads := 0
		for i, c := range b.Commands {
			c = fill.Replace(c)
			table := []expect{
				{match: regexp.MustCompile(`/configs`), has: []string{`"seq":`}},
				{match: regexp.MustCompile(`/die`), codes: curlDied},
				{match: regexp.MustCompile(`/demo/devices/`), until: true, has: []string{`"seq":1`}},
				{match: regexp.MustCompile(`/heartbeats/`), has: []string{`"error"`}}, // the demo has no ops-agent: 404, as curl shows
			}
			if strings.HasSuffix(strings.Fields(c)[len(strings.Fields(c))-1], "/api/v1/pools/demo-switches") || strings.Contains(c, "/api/v1/pools/demo-switches ") {
				want := `"agent":"demo-cfg-1"`
				if reads > 0 {
					want = `"agent":"demo-cfg-2"`
				}
				reads++
				table = []expect{{match: regexp.MustCompile(`.`), until: true, has: []string{want}}}
			}
			runExpected(t, fmt.Sprintf("%s command %d", where, i+1), c, table)
		}
		ran++
	}
	if ran == 0 {
		t.Error("no block ran")
	}
}

// TestNotRunnableMarkers: the marker is found before the block it marks,
// and a block without one is run.
func TestNotRunnableMarkers(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "x.md")
	os.WriteFile(md, []byte("a\n\n<!-- not-runnable: needs systemd -->\n\n```sh\nsystemctl start x\n```\n\n```sh\necho a \\\n  b   # c\n# only a comment\n```\n\n```hcl\nx = 1\n```\n"), 0o644)
	got := readBlocks(t, md)
	if len(got) != 2 || got[0].Skip != "needs systemd" || got[1].Skip != "" || len(got[1].Commands) != 1 || got[1].Commands[0] != "echo a  b   # c" {
		t.Errorf("blocks: %+v", got)
	}
}
