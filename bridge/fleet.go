package bridge

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/jobs"
)

// The fleet view: every agent of every node, from the snapshots that each
// medic node writes (exporter.NodeState as JSON at PREFIXnode:NAME:state,
// the names in the set PREFIXnodes), classified, counted, ordered
// problems first, filtered and paged. GET /api/v1/agents and the status
// page read it through one Fleet, which reads Redis at most once per
// MaxAge however many requests come, and once at a time.

// Agent states of the fleet view, from an agent's entry in its node's
// snapshot (exporter.AgentState):
//
//   - down: not alive ("up": false): no live process with the agent's
//     identity.
//   - failing: alive, but its probe's last result failed ("probe_ok":
//     false), or it registered a heartbeat and the last one is older
//     than its timeout (heartbeat_age_seconds > heartbeat_timeout_seconds:
//     hung).
//   - up: alive, and neither of those: its probe passed or it has none
//     (or it has not run yet), and its heartbeat is fresh or it has none.
//
// A node whose snapshot expired (the node stopped writing it) has no
// agents to classify: it is a node problem, "silent", listed beside the
// agents, never dropped.
const (
	AgentDown    = "down"
	AgentFailing = "failing"
	AgentUp      = "up"
)

// AgentStates are the fleet view's agent states, problems first: the
// order of GET /api/v1/agents and of the status page.
var AgentStates = []string{AgentDown, AgentFailing, AgentUp}

// Node problems: a node in PREFIXnodes whose snapshot cannot be shown as is.
const (
	NodeSilent     = "silent"     // its snapshot expired: the node stopped writing it
	NodeUnreadable = "unreadable" // its snapshot is not a NodeState, or could not be read
	NodeOld        = "old"        // its snapshot is older than snapshotOld: the node may be stuck; its agents are listed as last written
)

// Defaults of the fleet view.
const (
	DefaultFleetMaxAge   = 2 * time.Second
	DefaultFleetMaxStale = 15 * time.Second
	DefaultFleetLimit    = 100
	// snapshotOld is the age past which a snapshot is flagged: nodes
	// write one every 5 s, and it expires after 30 s.
	snapshotOld = 15 * time.Second
	// fleetBatch is how many snapshots one pipeline reads.
	fleetBatch = 1000
)

// ClassifyAgent returns the fleet state of one agent of a snapshot and,
// unless it is up, why.
func ClassifyAgent(a *exporter.AgentState) (state, reason string) {
	if !a.Up {
		if a.Detail != "" {
			return AgentDown, a.Detail
		}
		return AgentDown, "not alive"
	}
	var why []string
	if a.ProbeOK != nil && !*a.ProbeOK {
		why = append(why, strings.TrimSpace("probe failing: "+a.ProbeDetail))
	}
	if heartbeatOverdue(a) {
		why = append(why, fmt.Sprintf("heartbeat overdue: last %s ago, timeout %s",
			roundDuration(seconds(a.HeartbeatAge)), roundDuration(seconds(a.HeartbeatTimeout))))
	}
	if len(why) > 0 {
		return AgentFailing, strings.Join(why, "; ")
	}
	return AgentUp, ""
}

func heartbeatOverdue(a *exporter.AgentState) bool {
	return a.HeartbeatRegistered && a.HeartbeatTimeout > 0 && a.HeartbeatAge > a.HeartbeatTimeout
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// FleetAgent is one agent in the fleet view: its node, state and reason,
// when its node wrote the snapshot, and the snapshot's own fields.
type FleetAgent struct {
	Node    string    `json:"node"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Updated time.Time `json:"updated"`
	exporter.AgentState
}

// NodeProblem is a node whose snapshot is silent, unreadable or old.
type NodeProblem struct {
	Node    string    `json:"node"`
	Problem string    `json:"problem"`
	Error   string    `json:"error,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// FleetCounts are agents by state.
type FleetCounts struct {
	Down    int `json:"down"`
	Failing int `json:"failing"`
	Up      int `json:"up"`
}

func (c *FleetCounts) add(state string) {
	switch state {
	case AgentDown:
		c.Down++
	case AgentFailing:
		c.Failing++
	default:
		c.Up++
	}
}

// Total is every agent counted.
func (c FleetCounts) Total() int { return c.Down + c.Failing + c.Up }

// FleetNodes counts the nodes in PREFIXnodes: those whose snapshot was read
// (reporting, including old ones) and those with a problem.
type FleetNodes struct {
	Total      int `json:"total"`
	Reporting  int `json:"reporting"`
	Silent     int `json:"silent"`
	Unreadable int `json:"unreadable"`
	Old        int `json:"old"`
}

// fleetIndex is one reading of every snapshot.
type fleetIndex struct {
	at     time.Time
	took   time.Duration
	names  []string     // PREFIXnodes, sorted
	agents []FleetAgent // in fleetOrder
	// byState collects the agents by state rank while reading: nodes
	// come in name order and each node's agents in name order, so
	// concatenating them is fleetOrder, without sorting 40,000 agents.
	byState  [3][]FleetAgent
	counts   FleetCounts
	nodes    FleetNodes
	problems []NodeProblem // by node
}

// FleetOptions configure NewFleet.
type FleetOptions struct {
	Redis redis.UniversalClient
	Keys  jobs.Keys
	// MaxAge is how long one reading of the snapshots serves requests
	// before the next request starts a new one (default
	// DefaultFleetMaxAge; negative: every request waits for a reading
	// of its own, which requests that arrive meanwhile share). Nodes
	// write every 5 s, so a reading 2 s old is nearly as current as the
	// data.
	MaxAge time.Duration
	// MaxStale is how old a reading may be and still be served while a
	// new one is under way (default DefaultFleetMaxStale), so that a
	// request does not wait for a reading of every snapshot.
	MaxStale time.Duration
	// Timeout bounds one reading (default 10s).
	Timeout time.Duration
	// Live, when set, gives one node's state as of now: medic serve's
	// own node, shown live instead of from its last snapshot.
	Live func() (exporter.NodeState, bool)
	Now  func() time.Time
}

// Fleet reads the node snapshots for the fleet view.
type Fleet struct {
	o FleetOptions

	mu       sync.Mutex
	cur      *fleetIndex
	inflight *fleetCall
}

type fleetCall struct {
	done chan struct{}
	ix   *fleetIndex
	err  error
}

// NewFleet returns the fleet view over o.Redis.
func NewFleet(o FleetOptions) *Fleet {
	if o.MaxAge == 0 {
		o.MaxAge = DefaultFleetMaxAge
	}
	if o.MaxStale <= 0 {
		o.MaxStale = DefaultFleetMaxStale
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Fleet{o: o}
}

// index returns the current reading. A reading younger than MaxAge is
// served as is. An older one starts a new reading, once at a time; while
// it runs, requests are served the old one if it is younger than MaxStale
// (the page and the API say when it was read), or wait for the new one.
func (f *Fleet) index(ctx context.Context) (*fleetIndex, error) {
	f.mu.Lock()
	cur := f.cur
	var age time.Duration
	if cur != nil {
		age = f.o.Now().Sub(cur.at)
		if f.o.MaxAge > 0 && age < f.o.MaxAge {
			f.mu.Unlock()
			return cur, nil
		}
	}
	c := f.inflight
	if c == nil {
		c = &fleetCall{done: make(chan struct{})}
		f.inflight = c
		// The reading outlives the request that started it: the others
		// waiting for it must not fail because that one went away.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.o.Timeout)
		go func() {
			defer cancel()
			c.ix, c.err = f.read(rctx)
			f.mu.Lock()
			if c.err == nil {
				f.cur = c.ix
			}
			f.inflight = nil
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()
	if cur != nil && f.o.MaxAge > 0 && age < f.o.MaxStale {
		return cur, nil
	}
	select {
	case <-c.done:
		return c.ix, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read nodes: %w while reading the snapshots", ctx.Err())
	}
}

// read reads every snapshot: the node names, then their snapshots in
// pipelines of fleetBatch GETs (the keys are in many slots, so no MGET).
func (f *Fleet) read(ctx context.Context) (*fleetIndex, error) {
	start := f.o.Now()
	p := f.o.Keys.Root()
	names, err := f.o.Redis.SMembers(ctx, keys.Nodes(p)).Result()
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	sort.Strings(names)
	ix := &fleetIndex{at: start, names: names}
	ix.nodes.Total = len(names)
	cmds := make([]*redis.StringCmd, 0, min(len(names), fleetBatch))
	for chunk := range slices.Chunk(names, fleetBatch) {
		cmds = cmds[:0]
		_, err := f.o.Redis.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, n := range chunk {
				cmds = append(cmds, pipe.Get(ctx, keys.NodeState(p, n)))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read node snapshots: %w", err)
		}
		for i, n := range chunk {
			data, err := cmds[i].Bytes()
			switch {
			case errors.Is(err, redis.Nil):
				ix.problems = append(ix.problems, NodeProblem{Node: n, Problem: NodeSilent})
			case err != nil:
				ix.problems = append(ix.problems, NodeProblem{Node: n, Problem: NodeUnreadable, Error: err.Error()})
			default:
				var st exporter.NodeState
				if err := json.Unmarshal(data, &st); err != nil {
					ix.problems = append(ix.problems, NodeProblem{Node: n, Problem: NodeUnreadable, Error: snapshotError(err)})
					continue
				}
				ix.addNode(n, &st, start)
			}
		}
	}
	ix.finish(true)
	ix.took = f.o.Now().Sub(start)
	return ix, nil
}

// snapshotError says why a snapshot is not an exporter.NodeState, in
// the snapshot's JSON terms.
func snapshotError(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		want := "a " + typ.Type.Kind().String()
		switch typ.Type.Kind() {
		case reflect.Struct, reflect.Map:
			want = "an object"
		case reflect.Slice, reflect.Array:
			want = "an array"
		case reflect.Float64, reflect.Float32, reflect.Int, reflect.Int64, reflect.Uint64:
			want = "a number"
		case reflect.Bool:
			want = "true or false"
		}
		field := typ.Field
		if field == "" {
			field = "the snapshot"
		}
		return fmt.Sprintf("unreadable snapshot: %s is a JSON %s, want %s", field, typ.Value, want)
	}
	return "unreadable snapshot: " + err.Error()
}

// addNode adds a node's snapshot's agents (classified) and its problem if
// the snapshot is old.
func (ix *fleetIndex) addNode(name string, st *exporter.NodeState, now time.Time) {
	if !st.Updated.IsZero() && now.Sub(st.Updated) > snapshotOld {
		ix.problems = append(ix.problems, NodeProblem{Node: name, Problem: NodeOld, Updated: st.Updated})
	}
	slices.SortFunc(st.Agents, func(a, b exporter.AgentState) int { return cmp.Compare(a.Name, b.Name) })
	for _, a := range st.Agents {
		state, reason := ClassifyAgent(&a)
		r := stateRank(state)
		ix.byState[r] = append(ix.byState[r], FleetAgent{Node: name, State: state, Reason: reason, Updated: st.Updated, AgentState: a})
	}
}

// finish orders the agents and problems and counts them; sorted says
// that nodes were added in name order.
func (ix *fleetIndex) finish(sorted bool) {
	n := 0
	for _, b := range ix.byState {
		n += len(b)
	}
	ix.agents = slices.Grow(ix.agents, n)
	for i, b := range ix.byState {
		ix.agents = append(ix.agents, b...)
		ix.byState[i] = nil
	}
	if !sorted {
		slices.SortFunc(ix.agents, fleetOrder)
	}
	slices.SortFunc(ix.problems, func(a, b NodeProblem) int { return cmp.Compare(a.Node, b.Node) })
	ix.counts = FleetCounts{}
	for i := range ix.agents {
		ix.counts.add(ix.agents[i].State)
	}
	ix.nodes = FleetNodes{Total: ix.nodes.Total}
	for _, p := range ix.problems {
		switch p.Problem {
		case NodeSilent:
			ix.nodes.Silent++
		case NodeUnreadable:
			ix.nodes.Unreadable++
		case NodeOld:
			ix.nodes.Old++
		}
	}
	ix.nodes.Reporting = ix.nodes.Total - ix.nodes.Silent - ix.nodes.Unreadable
}

// withLive is ix with node st.Node's entries replaced by st.
func (ix *fleetIndex) withLive(st exporter.NodeState, now time.Time) *fleetIndex {
	out := &fleetIndex{at: ix.at, took: ix.took, names: ix.names, nodes: FleetNodes{Total: ix.nodes.Total}}
	out.agents = make([]FleetAgent, 0, len(ix.agents)+len(st.Agents))
	for _, a := range ix.agents {
		if a.Node != st.Node {
			out.agents = append(out.agents, a)
		}
	}
	for _, p := range ix.problems {
		if p.Node != st.Node {
			out.problems = append(out.problems, p)
		}
	}
	if _, found := slices.BinarySearch(ix.names, st.Node); !found {
		out.nodes.Total++ // it has not written a snapshot yet
	}
	out.addNode(st.Node, &st, now)
	out.finish(false)
	return out
}

// fleetOrder is the order of the fleet view: down, failing, up; then by
// node and agent name.
func fleetOrder(a, b FleetAgent) int {
	return cmp.Or(cmp.Compare(stateRank(a.State), stateRank(b.State)), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Name, b.Name))
}

func stateRank(s string) int {
	if i := slices.Index(AgentStates, s); i >= 0 {
		return i
	}
	return len(AgentStates)
}

// FleetQuery selects a page of the fleet view.
type FleetQuery struct {
	States []string // any of these; none: every state
	Node   string   // this node only; "": every node
	Limit  int      // agents per page (default DefaultFleetLimit, at most jobs.MaxListLimit)
	Cursor string   // the Next of the previous page; "": the first page
}

// FleetPage is one page of the fleet view: GET /api/v1/agents's answer.
type FleetPage struct {
	// AsOf is when the snapshots were read.
	AsOf time.Time `json:"as_of"`
	// Counts are every agent of every node by state, whatever the
	// filters; Nodes every node.
	Counts FleetCounts `json:"counts"`
	Nodes  FleetNodes  `json:"nodes"`
	// Total is how many agents match the filters; Offset how many of
	// them come before this page.
	Total  int          `json:"total"`
	Offset int          `json:"offset"`
	Agents []FleetAgent `json:"agents"`
	// Next is the cursor of the next page; absent on the last page.
	Next string `json:"next,omitempty"`
	// NodeProblems are every node (of the node filter) that is silent,
	// unreadable or old, whatever the state filter; never paged.
	NodeProblems []NodeProblem `json:"node_problems"`
}

// fleetParams are the query parameters of GET /api/v1/agents (and of the
// status page's agents section).
var fleetParams = []string{"state", "node", "limit", "cursor"}

// parseFleetQuery reads a FleetQuery from query parameters; state may be
// repeated or comma-separated.
func parseFleetQuery(q url.Values) (FleetQuery, error) {
	var fq FleetQuery
	for name := range q {
		if !slices.Contains(fleetParams, name) {
			return fq, fmt.Errorf("unknown parameter %q: want %s", name, strings.Join(fleetParams, ", "))
		}
	}
	for _, v := range q["state"] {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if !slices.Contains(AgentStates, s) {
				return fq, fmt.Errorf("state %q: want %s (or several, comma-separated)", s, strings.Join(AgentStates, ", "))
			}
			if !slices.Contains(fq.States, s) {
				fq.States = append(fq.States, s)
			}
		}
	}
	fq.Node = strings.TrimSpace(q.Get("node"))
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > jobs.MaxListLimit {
			return fq, fmt.Errorf("limit: want an integer from 1 to %d", jobs.MaxListLimit)
		}
		fq.Limit = n
	}
	fq.Cursor = q.Get("cursor")
	if fq.Cursor != "" {
		if _, err := decodeCursor(fq.Cursor); err != nil {
			return fq, err
		}
	}
	return fq, nil
}

// A cursor is the sort key of the last agent of a page: the next page
// starts after it, so agents that change state between two pages move
// rather than shift the whole listing.
func encodeCursor(a *FleetAgent) string {
	return base64.RawURLEncoding.EncodeToString([]byte(a.State + "\x00" + a.Node + "\x00" + a.Name))
}

func decodeCursor(s string) (FleetAgent, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	parts := strings.Split(string(b), "\x00")
	if err != nil || len(parts) != 3 || !slices.Contains(AgentStates, parts[0]) {
		return FleetAgent{}, errors.New("cursor: not a cursor from this API (use the previous page's \"next\")")
	}
	a := FleetAgent{Node: parts[1], State: parts[0]}
	a.Name = parts[2]
	return a, nil
}

// Query returns a page of the fleet view.
func (f *Fleet) Query(ctx context.Context, q FleetQuery) (*FleetPage, error) {
	ix, err := f.index(ctx)
	if err != nil {
		return nil, err
	}
	if f.o.Live != nil {
		if st, ok := f.o.Live(); ok {
			ix = ix.withLive(st, f.o.Now())
		}
	}
	return ix.query(q), nil
}

func (ix *fleetIndex) query(q FleetQuery) *FleetPage {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultFleetLimit
	}
	limit = min(limit, jobs.MaxListLimit)
	start := 0
	if q.Cursor != "" {
		if after, err := decodeCursor(q.Cursor); err == nil {
			start = sort.Search(len(ix.agents), func(i int) bool { return fleetOrder(ix.agents[i], after) > 0 })
		}
	}
	p := &FleetPage{AsOf: ix.at, Counts: ix.counts, Nodes: ix.nodes, Agents: []FleetAgent{}, NodeProblems: []NodeProblem{}}
	more := false
	for i := range ix.agents {
		a := &ix.agents[i]
		if (q.Node != "" && a.Node != q.Node) || (len(q.States) > 0 && !slices.Contains(q.States, a.State)) {
			continue
		}
		p.Total++
		switch {
		case i < start:
			p.Offset++
		case len(p.Agents) < limit:
			p.Agents = append(p.Agents, *a)
		default:
			more = true
		}
	}
	if more {
		p.Next = encodeCursor(&p.Agents[len(p.Agents)-1])
	}
	for _, np := range ix.problems {
		if q.Node == "" || np.Node == q.Node {
			p.NodeProblems = append(p.NodeProblems, np)
		}
	}
	return p
}

// handleAgents is GET /api/v1/agents?state=&node=&limit=&cursor=.
func (b *Bridge) handleAgents(w http.ResponseWriter, r *http.Request) {
	q, err := parseFleetQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, err := b.fleet.Query(r.Context(), q)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, page)
}
