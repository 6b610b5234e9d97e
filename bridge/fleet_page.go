package bridge

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/medicops/medic/hcl"
)

// The status page's agents section: the fleet view (fleet.go) rendered by
// the "fleet" template (templates/fleet.html). Fleet-wide counts by state
// on top, then the node problems, then one table of agents across every
// node, problems first, filtered by the same parameters as
// GET /api/v1/agents (state, node, limit, cursor) and paged. Whatever is
// not on the page is counted on it, with the link that shows it.

// maxProblemsShown bounds the node problems listed on the page; the rest
// are counted, and GET /api/v1/agents lists every one.
const maxProblemsShown = 50

// fleetView is what the "fleet" template renders.
type fleetView struct {
	AsOf   time.Time
	Took   string // how long reading the snapshots took
	Counts FleetCounts
	Nodes  FleetNodes
	// Problems are the first maxProblemsShown node problems; MoreProblems
	// how many more there are, all in ProblemsURL.
	Problems     []NodeProblem
	MoreProblems int
	ProblemsURL  string
	Agents       []agentView
	// Total agents match the filter; this page shows From..To of them
	// (1-based; 0..0 when none).
	Total, From, To int
	// The filter, as the form shows it.
	State, Node string
	Limit       int
	Filtered    bool
	// States are the form's choices.
	States []stateChoice
	// NextURL is the next page, FirstURL the first (both "" when there is
	// none to go to); StateURL the page filtered to a state.
	NextURL, FirstURL string
	StateURL          map[string]string
	// NoRefresh keeps ?refresh=0 in the form and links.
	NoRefresh bool
	// Error is a refused filter: the page shows it, and the fleet
	// unfiltered.
	Error string
}

type stateChoice struct{ Value, Label string }

var fleetStateChoices = []stateChoice{
	{"", "any state"},
	{AgentDown + "," + AgentFailing, "down or failing"},
	{AgentDown, "down"},
	{AgentFailing, "failing"},
	{AgentUp, "up"},
}

// agentView is one agent in the page's columns.
type agentView struct {
	Node    string
	Updated time.Time
	NodeOld bool // its node's snapshot is older than snapshotOld
	Name    string
	State   string // down, failing, up
	Class   string // bad, warn, ok: the CSS class of State
	Reason  string // why it is not up
	// Detail is the node's word on the process ("pid 42 alive",
	// "pid 42 exited (exit status 1)").
	Detail       string
	Unsupervised bool
	PID          int64 // 0: unknown
	Probe        *bool // nil: no probe, or not run yet
	ProbeDetail  string
	Heartbeat    heartbeatView
	Restarts     *int64
	Memory       usageView
	CPU          usageView
	Disk         usageView
	RSS          string // human-readable; "" unknown
}

type heartbeatView struct {
	Registered bool    // false: the agent does not heartbeat, "—"
	HasAge     bool    //
	Age        float64 // seconds since the last heartbeat
	Timeout    float64 // seconds; 0: unknown
	Overdue    bool    // Age > Timeout: the agent counts as failing (hung)
}

type usageView struct {
	Known     bool
	Ratio     float64
	Threshold float64
	Hot       bool // Ratio > Threshold
}

// stateClass is the CSS class of a fleet state.
func stateClass(s string) string {
	switch s {
	case AgentUp:
		return "ok"
	case AgentFailing:
		return "warn"
	}
	return "bad"
}

// readFleet reads the page's slice of the fleet view; the error string is
// a failed reading (the page shows it in the section).
func (p *statusPage) readFleet(ctx context.Context, q url.Values, now time.Time) (*fleetView, string) {
	v := &fleetView{NoRefresh: q.Get("refresh") == "0", States: fleetStateChoices}
	fq, err := parseFleetQuery(pageFleetParams(q))
	if err != nil {
		v.Error = err.Error() + "; showing every agent"
		fq = FleetQuery{}
	}
	page, err := p.o.Fleet.Query(ctx, fq)
	if err != nil {
		return v, err.Error()
	}
	v.AsOf, v.Counts, v.Nodes, v.Total = page.AsOf, page.Counts, page.Nodes, page.Total
	if ix := p.o.Fleet.current(); ix != nil {
		v.Took = roundDuration(ix.took)
	}
	v.State, v.Node, v.Limit = strings.Join(fq.States, ","), fq.Node, fq.Limit
	v.Filtered = v.State != "" || v.Node != ""
	if len(page.Agents) > 0 {
		v.From, v.To = page.Offset+1, page.Offset+len(page.Agents)
	}
	for i := range page.Agents {
		v.Agents = append(v.Agents, viewAgent(&page.Agents[i], now))
	}
	v.Problems = page.NodeProblems[:min(len(page.NodeProblems), maxProblemsShown)]
	v.MoreProblems = len(page.NodeProblems) - len(v.Problems)
	api := url.Values{}
	if fq.Node != "" {
		api.Set("node", fq.Node)
	}
	api.Set("limit", "1")
	v.ProblemsURL = "/api/v1/agents?" + api.Encode()

	link := func(state, cursor string) string {
		l := url.Values{}
		if state != "" {
			l.Set("state", state)
		}
		if fq.Node != "" {
			l.Set("node", fq.Node)
		}
		if fq.Limit != 0 {
			l.Set("limit", strconv.Itoa(fq.Limit))
		}
		if cursor != "" {
			l.Set("cursor", cursor)
		}
		if v.NoRefresh {
			l.Set("refresh", "0")
		}
		return "/?" + l.Encode() + "#agents"
	}
	if page.Next != "" {
		v.NextURL = link(v.State, page.Next)
	}
	if fq.Cursor != "" {
		v.FirstURL = link(v.State, "")
	}
	v.StateURL = map[string]string{"": link("", "")}
	for _, s := range AgentStates {
		v.StateURL[s] = link(s, "")
	}
	return v, ""
}

// pageFleetParams are the page's query parameters that belong to the
// agents section: the others (refresh, …) are the page's.
func pageFleetParams(q url.Values) url.Values {
	out := url.Values{}
	for _, k := range fleetParams {
		if vs, ok := q[k]; ok {
			out[k] = vs
		}
	}
	return out
}

// current is the last reading, if any.
func (f *Fleet) current() *fleetIndex {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

// viewAgent puts one agent of the fleet view in the page's columns.
func viewAgent(a *FleetAgent, now time.Time) agentView {
	v := agentView{
		Node: a.Node, Updated: a.Updated, NodeOld: !a.Updated.IsZero() && now.Sub(a.Updated) > snapshotOld,
		Name: a.Name, State: a.State, Class: stateClass(a.State), Reason: a.Reason,
		Detail: a.Detail, Unsupervised: !a.Supervised, PID: int64(a.PID),
		Probe: a.ProbeOK, ProbeDetail: a.ProbeDetail,
	}
	restarts := int64(a.Restarts)
	v.Restarts = &restarts
	v.Heartbeat = heartbeatView{
		Registered: a.HeartbeatRegistered, HasAge: a.HeartbeatRegistered,
		Age: a.HeartbeatAge, Timeout: a.HeartbeatTimeout, Overdue: heartbeatOverdue(&a.AgentState),
	}
	// The agent's own thresholds, as its node wrote them; a field that
	// is missing (or a snapshot of an older node) takes the default.
	th := hcl.DefaultThresholds()
	if t := a.Thresholds; t != nil {
		for _, f := range []struct {
			dst *float64
			v   float64
		}{{&th.Memory, t.Memory}, {&th.CPU, t.CPU}, {&th.Disk, t.Disk}} {
			if f.v > 0 {
				*f.dst = f.v
			}
		}
	}
	// A stopped process has no usage: its zeros are no reading.
	usage := func(ratio, threshold float64) usageView {
		if !a.Up && ratio == 0 {
			return usageView{}
		}
		return usageView{Known: true, Ratio: ratio, Threshold: threshold, Hot: threshold > 0 && ratio > threshold}
	}
	v.Memory, v.CPU, v.Disk = usage(a.Usage.Memory, th.Memory), usage(a.Usage.CPU, th.CPU), usage(a.Usage.Disk, th.Disk)
	if a.Up || a.Usage.RSS > 0 {
		v.RSS = humanBytes(float64(a.Usage.RSS))
	}
	return v
}
