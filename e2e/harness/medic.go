package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/testport"
	"github.com/medicops/medic/runbooks"
)

// Binaries are the programs built from this tree.
type Binaries struct {
	Dir       string
	Medic     string
	TestAgent string
}

// RepoRoot is the directory holding go.mod of the module the tests run in.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// Build compiles ./cmd/medic and ./internal/testagent into dir. It is meant
// for TestMain: any error must fail the whole package loudly.
func Build(dir string) (Binaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Dir: dir, Medic: filepath.Join(dir, "medic"), TestAgent: filepath.Join(dir, "testagent")}
	for _, x := range []struct{ out, pkg string }{
		{b.Medic, "./cmd/medic"},
		{b.TestAgent, "./internal/testagent"},
	} {
		cmd := exec.Command("go", "build", "-o", x.out, x.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("go build %s: %v\n%s", x.pkg, err, out)
		}
	}
	return b, nil
}

// Token writes a random bearer token to a file and returns both.
func Token(t testing.TB) (token, file string) {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token = hex.EncodeToString(b)
	file = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return token, file
}

// BridgeOptions tune StartBridge.
type BridgeOptions struct {
	Name       string // log name; default "bridge"
	Medic      string // the medic binary
	ConfigPath string // --config.file
	RedisURL   string
	TokenFile  string
	Addr       string // default: a free loopback port
	// LogLevel is --log.level; default debug (benchmarks use info, what
	// users run).
	LogLevel string
	Extra    []string
	Env      []string
	LogDir   string
}

// Bridge is a running `medic bridge`.
type Bridge struct {
	*Proc
	URL  string
	Addr string
	// Token is the bearer token from BridgeOptions.TokenFile: the bridge
	// requires it for reads too (run records hold script output).
	Token string
}

// StartBridge starts `medic bridge` and waits for /-/ready.
func StartBridge(t testing.TB, o BridgeOptions) *Bridge {
	t.Helper()
	if o.Name == "" {
		o.Name = "bridge"
	}
	if o.Addr == "" {
		o.Addr = testport.Addr(t)
	}
	if o.LogLevel == "" {
		o.LogLevel = "debug"
	}
	args := []string{o.Medic, "bridge",
		"--config.file=" + o.ConfigPath,
		"--redis.url=" + o.RedisURL,
		"--web.listen-address=" + o.Addr,
		"--log.level=" + o.LogLevel,
	}
	if o.TokenFile != "" {
		args = append(args, "--bridge.token-file="+o.TokenFile)
	}
	args = append(args, o.Extra...)
	b := &Bridge{Addr: o.Addr, URL: "http://" + o.Addr}
	if o.TokenFile != "" {
		tok, err := os.ReadFile(o.TokenFile)
		if err != nil {
			t.Fatal(err)
		}
		b.Token = strings.TrimSpace(string(tok))
	}
	b.Proc = StartProc(t, o.Name, args, ProcOptions{Env: o.Env, LogDir: o.LogDir})
	WaitHTTP(t, b.URL+"/-/ready", 60*time.Second, b.Proc)
	return b
}

// WebhookURL is where Alertmanager posts.
func (b *Bridge) WebhookURL() string { return b.URL + "/api/v1/webhook" }

// Auth is the header that authenticates to the bridge (none without a
// token).
func (b *Bridge) Auth() http.Header {
	if b.Token == "" {
		return nil
	}
	return http.Header{"Authorization": {"Bearer " + b.Token}}
}

// GetJSON GETs path from the bridge, authenticated, and decodes a 200
// answer into v.
func (b *Bridge) GetJSON(ctx context.Context, path string, v any) error {
	return getJSON(ctx, b.URL+path, path, b.Auth(), v)
}

// Runs lists run records; filter takes agent, node, runbook, outcome, limit.
func (b *Bridge) Runs(ctx context.Context, filter url.Values) ([]runbooks.RunRecord, error) {
	code, body, err := Do(ctx, http.MethodGet, b.URL+"/api/v1/runs?"+filter.Encode(), b.Auth(), nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/runs: %d %.300s", code, body)
	}
	return decodeRuns(body)
}

// decodeRuns accepts a bare array or an object wrapping it in "runs" or
// "data", so the tests do not depend on the envelope.
func decodeRuns(body []byte) ([]runbooks.RunRecord, error) {
	body = bytes.TrimSpace(body)
	var runs []runbooks.RunRecord
	if len(body) > 0 && body[0] == '[' {
		err := json.Unmarshal(body, &runs)
		return runs, err
	}
	var env struct {
		Runs []runbooks.RunRecord `json:"runs"`
		Data []runbooks.RunRecord `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("decode runs: %w: %.300s", err, body)
	}
	if env.Runs != nil {
		return env.Runs, nil
	}
	return env.Data, nil
}

// Run fetches one run record.
func (b *Bridge) Run(ctx context.Context, id string) (*runbooks.RunRecord, error) {
	var r runbooks.RunRecord
	if err := b.GetJSON(ctx, "/api/v1/runs/"+url.PathEscape(id), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// NodeOptions tune StartNode.
type NodeOptions struct {
	Name       string // --node.name
	Medic      string
	ConfigPath string
	RedisURL   string
	Addr       string
	Extra      []string
	Env        []string
	LogDir     string
}

// Node is a running `medic node`.
type Node struct {
	*Proc
	Name string
	URL  string
	Addr string
}

// StartNode starts `medic node` and waits for /-/healthy.
func StartNode(t testing.TB, o NodeOptions) *Node {
	t.Helper()
	if o.Addr == "" {
		o.Addr = testport.Addr(t)
	}
	args := []string{o.Medic, "node",
		"--config.file=" + o.ConfigPath,
		"--redis.url=" + o.RedisURL,
		"--node.name=" + o.Name,
		"--web.listen-address=" + o.Addr,
		"--log.level=debug",
	}
	args = append(args, o.Extra...)
	n := &Node{Name: o.Name, Addr: o.Addr, URL: "http://" + o.Addr}
	n.Proc = StartProc(t, "node-"+o.Name, args, ProcOptions{Env: o.Env, LogDir: o.LogDir})
	WaitHTTP(t, n.URL+"/-/healthy", 60*time.Second, n.Proc)
	return n
}

// Heartbeat registers or beats agent with timeout.
func (n *Node) Heartbeat(ctx context.Context, agent string, timeout time.Duration) error {
	body := fmt.Sprintf(`{"timeout":%q}`, timeout.String())
	code, b, err := Do(ctx, http.MethodPut, n.URL+"/api/v1/heartbeats/"+url.PathEscape(agent),
		http.Header{"Content-Type": {"application/json"}}, []byte(body))
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("PUT heartbeat %s: %d %s", agent, code, b)
	}
	return nil
}
