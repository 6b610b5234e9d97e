package bridge

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/runbooks"
)

// The status page is server-rendered from one embedded template: no
// front-end build, no JavaScript, readable in a text browser, refreshed
// by a meta tag.

//go:embed templates/status.html
var statusFS embed.FS

var statusTmpl = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"since": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return roundDuration(now.Sub(t)) + " ago"
	},
	"secs": func(f float64) string {
		return roundDuration(time.Duration(f * float64(time.Second)))
	},
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"deref": func(p *int) int { return *p },
	"ratio": func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
	"join":  strings.Join,
}).ParseFS(statusFS, "templates/status.html"))

func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// RunLister is what the status page needs from the run store
// (*RunStore implements it).
type RunLister interface {
	List(ctx context.Context, f RunFilter) ([]*runbooks.RunRecord, error)
}

var _ RunLister = (*RunStore)(nil)

// PoolStatus is one pool as the status page shows it; the caller fills it
// from the queue package's status (queue.ReadStatus).
type PoolStatus struct {
	Pool        string
	Agent       string // the active agent
	Status      string // active, switching, waiting, ""
	Lock        bool
	Epoch       int64
	Backlog     int64
	Buffer      int64
	Switchovers int64
	Agents      []PoolAgent
	Error       string // reading this pool failed
}

// PoolAgent is one registered agent of a pool.
type PoolAgent struct {
	ID           string
	Healthy      bool
	HeartbeatAge float64 // seconds
}

// StatusOptions configure NewStatusPage. Every source is optional; a
// missing one leaves its section empty, a failing one shows its error in
// the section, and the page is still served.
type StatusOptions struct {
	// Runs lists recent run records.
	Runs RunLister
	// Redis holds the node snapshots: SMEMBERS PREFIXnodes and
	// GET PREFIXnode:NAME:state (JSON written by each medic node).
	Redis redis.UniversalClient
	Keys  Keys
	// Pools returns the pools' status.
	Pools func(ctx context.Context) ([]PoolStatus, error)
	// RunLimit is how many recent runs are shown (default 25).
	RunLimit int
	// Refresh is the meta refresh period (default 5s; negative disables).
	Refresh time.Duration
	// Timeout bounds gathering the data (default 3s).
	Timeout time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// NewStatusPage returns the handler of GET / on the bridge. Paths other
// than "/" get 404 so that it can be mounted as the catch-all.
func NewStatusPage(o StatusOptions) http.Handler {
	if o.RunLimit <= 0 {
		o.RunLimit = 25
	}
	if o.Refresh == 0 {
		o.Refresh = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &statusPage{o: o}
}

type statusPage struct{ o StatusOptions }

// statusData is what the template renders.
type statusData struct {
	Now        time.Time
	Refresh    int // seconds; 0: no refresh
	Nodes      []nodeView
	NodesError string
	Runs       []*runbooks.RunRecord
	RunsError  string
	Pools      []PoolStatus
	PoolsError string
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.o.Timeout)
	defer cancel()
	d := statusData{Now: p.o.Now()}
	if p.o.Refresh > 0 && r.URL.Query().Get("refresh") != "0" {
		d.Refresh = max(1, int(p.o.Refresh/time.Second))
	}
	if p.o.Redis != nil {
		nodes, err := readNodes(ctx, p.o.Redis, p.o.Keys)
		d.Nodes = nodes
		if err != nil {
			d.NodesError = err.Error()
		}
	}
	if p.o.Runs != nil {
		runs, err := p.o.Runs.List(ctx, RunFilter{Limit: p.o.RunLimit})
		d.Runs = runs
		if err != nil {
			d.RunsError = err.Error()
		}
	}
	if p.o.Pools != nil {
		pools, err := p.o.Pools(ctx)
		sort.Slice(pools, func(i, j int) bool { return pools[i].Pool < pools[j].Pool })
		d.Pools = pools
		if err != nil {
			d.PoolsError = err.Error()
		}
	}
	for _, e := range []string{d.NodesError, d.RunsError, d.PoolsError} {
		if e != "" {
			p.o.Logger.Warn("status page: a source failed", "err", e)
		}
	}
	var buf bytes.Buffer
	if err := statusTmpl.Execute(&buf, d); err != nil {
		p.o.Logger.Error("status page: render", "err", err)
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page shows operational data; it never needs to be framed.
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write(buf.Bytes())
}

// nodeView is one node's last snapshot.
type nodeView struct {
	Name    string
	Updated time.Time
	Stale   bool // the snapshot expired: the node stopped writing
	Agents  []agentView
	Error   string
}

// agentView is one agent of a node snapshot.
type agentView struct {
	Name  string
	State string // up, down, hung, unknown, or what the node says
	Class string // ok, bad, warn: the CSS class of State
	// Facts are the other scalar fields of the snapshot, sorted by key.
	Facts []fact
}

type fact struct{ Key, Value string }

// maxNodes bounds how many node snapshots one page reads; maxFacts how
// many details one agent shows.
const (
	maxNodes = 200
	maxFacts = 24
)

// readNodes reads the node snapshots. The node owns their format; this
// reads it tolerantly: an object with "agents" as a list of objects (with
// "name"/"agent"/"id") or as a map from name to object, and state from
// "state", or from "up"/"alive" and "probe_success"/"probe_ok".
func readNodes(ctx context.Context, c redis.UniversalClient, k Keys) ([]nodeView, error) {
	names, err := c.SMembers(ctx, k.prefix()+"nodes").Result()
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	sort.Strings(names)
	if len(names) > maxNodes {
		names = names[:maxNodes]
	}
	// One GET per key in a pipeline: the snapshots are in many slots.
	cmds := make([]*redis.StringCmd, len(names))
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.Get(ctx, nodeStateKey(k, n))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read node snapshots: %w", err)
	}
	out := make([]nodeView, 0, len(names))
	for i, n := range names {
		data, err := cmds[i].Bytes()
		if errors.Is(err, redis.Nil) {
			out = append(out, nodeView{Name: n, Stale: true})
			continue
		}
		if err != nil {
			out = append(out, nodeView{Name: n, Error: err.Error()})
			continue
		}
		out = append(out, parseNodeSnapshot(n, data))
	}
	return out, nil
}

func nodeStateKey(k Keys, node string) string { return k.prefix() + "node:" + node + ":state" }

func parseNodeSnapshot(name string, data []byte) nodeView {
	v := nodeView{Name: name}
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		v.Error = "unreadable snapshot: " + err.Error()
		return v
	}
	for _, key := range []string{"updated", "time", "at", "timestamp", "updated_at"} {
		if t, ok := asTime(top[key]); ok {
			v.Updated = t
			break
		}
	}
	switch agents := top["agents"].(type) {
	case []any:
		for _, a := range agents {
			if m, ok := a.(map[string]any); ok {
				v.Agents = append(v.Agents, parseAgent("", m))
			}
		}
	case map[string]any:
		for n, a := range agents {
			if m, ok := a.(map[string]any); ok {
				v.Agents = append(v.Agents, parseAgent(n, m))
			}
		}
	}
	sort.Slice(v.Agents, func(i, j int) bool { return v.Agents[i].Name < v.Agents[j].Name })
	return v
}

func parseAgent(name string, m map[string]any) agentView {
	a := agentView{Name: name}
	used := map[string]bool{}
	if a.Name == "" {
		for _, k := range []string{"name", "agent", "id"} {
			if s, ok := m[k].(string); ok && s != "" {
				a.Name, used[k] = s, true
				break
			}
		}
	}
	up, hasUp := firstBool(m, used, "up", "alive", "running")
	probe, hasProbe := firstBool(m, used, "probe_success", "probe_ok", "healthy")
	if s, ok := m["state"].(string); ok && s != "" {
		a.State, used["state"] = s, true
	} else if s, ok := m["status"].(string); ok && s != "" {
		a.State, used["status"] = s, true
	}
	switch {
	case a.State != "":
	case hasUp && !up:
		a.State = "down"
	case hasProbe && !probe:
		a.State = "failing"
	case hasUp || hasProbe:
		a.State = "up"
	default:
		a.State = "unknown"
	}
	switch strings.ToLower(a.State) {
	case "up", "ok", "running", "healthy", "alive":
		a.Class = "ok"
	case "unknown", "starting", "restarting", "remediating":
		a.Class = "warn"
	default:
		a.Class = "bad"
	}
	if hasUp {
		a.Facts = append(a.Facts, fact{"up", strconv.FormatBool(up)})
	}
	if hasProbe {
		a.Facts = append(a.Facts, fact{"probe", strconv.FormatBool(probe)})
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !used[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s, ok := scalar(m[k]); ok {
			a.Facts = append(a.Facts, fact{k, s})
			continue
		}
		// One level of nesting ("usage": {"memory": …}) is flattened.
		if sub, ok := m[k].(map[string]any); ok {
			subKeys := make([]string, 0, len(sub))
			for sk := range sub {
				subKeys = append(subKeys, sk)
			}
			sort.Strings(subKeys)
			for _, sk := range subKeys {
				if s, ok := scalar(sub[sk]); ok {
					a.Facts = append(a.Facts, fact{k + "." + sk, s})
				}
			}
		}
	}
	if len(a.Facts) > maxFacts {
		a.Facts = a.Facts[:maxFacts]
	}
	return a
}

func firstBool(m map[string]any, used map[string]bool, keys ...string) (bool, bool) {
	for _, k := range keys {
		if b, ok := m[k].(bool); ok {
			used[k] = true
			return b, true
		}
	}
	return false, false
}

// scalar formats strings, numbers and booleans; nested values are left
// out of the page.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		if len(x) > 120 {
			x = x[:120] + "…"
		}
		return x, true
	case json.Number:
		if f, err := x.Float64(); err == nil && strings.ContainsAny(x.String(), ".eE") {
			return strconv.FormatFloat(f, 'g', 4, 64), true
		}
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func asTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		return t, err == nil
	case json.Number:
		f, err := x.Float64()
		if err != nil || f <= 0 {
			return time.Time{}, false
		}
		if f > 1e12 { // milliseconds
			return time.UnixMilli(int64(f)), true
		}
		return time.Unix(0, int64(f*1e9)), true
	}
	return time.Time{}, false
}
