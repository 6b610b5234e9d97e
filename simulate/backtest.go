package simulate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/runbooks"
)

// BacktestReport is what `medic backtest --format=json` prints
// (docs/design.md §9); the text report shows the same and a bit more.
type BacktestReport struct {
	From       time.Time        `json:"from"`
	To         time.Time        `json:"to"`
	Episodes   int              `json:"episodes"`
	Unmatched  int              `json:"unmatched"`
	Unroutable int              `json:"unroutable"`
	Runbooks   []RunbookSummary `json:"runbooks"`
	Agents     []AgentRuns      `json:"agents"`

	// Text report only.
	runsPerHour map[time.Time]int
	other       map[string]map[string]int // runbook → outcome → runs that neither acted nor were held back
	runDuration time.Duration
}

// RunbookSummary is one runbook's share of the history.
type RunbookSummary struct {
	Runbook string `json:"runbook"`
	// Runs is how many episodes reached the engine with this runbook.
	Runs int `json:"runs"`
	// Agents is how many distinct agents it would have acted on.
	Agents int `json:"agents"`
	// PeakConcurrency is the most runs acting at once.
	PeakConcurrency int             `json:"peak_concurrency"`
	Outcomes        BacktestOutcome `json:"outcomes"`
}

// BacktestOutcome counts the runs of a runbook by what the safety
// controls made of them.
type BacktestOutcome struct {
	WouldAct        int `json:"would_act"`
	Limited         int `json:"limited"`
	CircuitOpen     int `json:"circuit_open"`
	BudgetExhausted int `json:"budget_exhausted"`
	Shadowed        int `json:"shadowed"`
	PendingApproval int `json:"pending_approval"`
}

// AgentRuns is how many runs one agent would have had.
type AgentRuns struct {
	Node  string `json:"node"`
	Agent string `json:"agent"`
	Runs  int    `json:"runs"`
}

// Backtest replays episodes, in the order they started, through the
// bridge's router and the engine with its safety controls, in virtual
// time. The simulated agent is down and recovers after a restart that
// takes runDuration; approve-mode runs stop at pending_approval.
func Backtest(ctx context.Context, cfg *hcl.Config, episodes []Episode, from, to time.Time, runDuration time.Duration) (*BacktestReport, error) {
	rep := &BacktestReport{
		From: from.UTC(), To: to.UTC(), Episodes: len(episodes), Runbooks: []RunbookSummary{}, Agents: []AgentRuns{},
		runsPerHour: map[time.Time]int{}, other: map[string]map[string]int{}, runDuration: runDuration,
	}
	sim := New(cfg, from)
	sim.pending = true
	// A dead agent: every agent, with a probe or without, is restarted
	// (runDuration) and then passes its verify.
	w := hcl.DefaultTestWorld()
	w.Alive = false
	w.RestartDuration = runDuration

	idx := map[string]int{}
	for _, rb := range cfg.Runbooks {
		idx[rb.Name] = len(rep.Runbooks)
		rep.Runbooks = append(rep.Runbooks, RunbookSummary{Runbook: rb.Name})
	}
	type span struct{ from, to time.Time }
	acting := map[string][]span{}
	touched := map[string]map[string]bool{}
	agentRuns := map[[2]string]int{}
	for _, ep := range episodes {
		res, err := sim.Deliver(ctx, alert.Alert{Labels: ep.Labels, Status: "firing", StartsAt: ep.Start}, ep.Start, w)
		if err != nil {
			return nil, fmt.Errorf("episode %v at %s: %w", ep.Labels, ep.Start.UTC().Format(time.RFC3339), err)
		}
		switch res.Outcome {
		case OutcomeIgnored:
			rep.Unmatched++
			continue
		case runbooks.OutcomeUnroutable:
			rep.Unroutable++
			continue
		}
		rec := res.Record
		if rec == nil {
			continue
		}
		i, ok := idx[rec.Runbook]
		if !ok {
			continue
		}
		sum := &rep.Runbooks[i]
		sum.Runs++
		agentRuns[[2]string{rec.Node, rec.Agent}]++
		rep.runsPerHour[ep.Start.UTC().Truncate(time.Hour)]++
		class, actFrom := classify(rec)
		switch class {
		case "would_act":
			sum.Outcomes.WouldAct++
			acting[rec.Runbook] = append(acting[rec.Runbook], span{actFrom, rec.Finished})
			if touched[rec.Runbook] == nil {
				touched[rec.Runbook] = map[string]bool{}
			}
			touched[rec.Runbook][rec.Node+"/"+rec.Agent] = true
		case runbooks.OutcomeLimited:
			sum.Outcomes.Limited++
		case runbooks.OutcomeCircuitOpen:
			sum.Outcomes.CircuitOpen++
		case "budget_exhausted":
			sum.Outcomes.BudgetExhausted++
		case runbooks.OutcomeShadowed:
			sum.Outcomes.Shadowed++
		case runbooks.OutcomePendingApproval:
			sum.Outcomes.PendingApproval++
		default:
			if rep.other[rec.Runbook] == nil {
				rep.other[rec.Runbook] = map[string]int{}
			}
			rep.other[rec.Runbook][rec.Outcome]++
		}
	}
	for i := range rep.Runbooks {
		sum := &rep.Runbooks[i]
		sum.Agents = len(touched[sum.Runbook])
		// The most spans open at once: +1 at each start, -1 at each end,
		// an end before a start at the same instant.
		type edge struct {
			t time.Time
			d int
		}
		var edges []edge
		for _, s := range acting[sum.Runbook] {
			edges = append(edges, edge{s.from, 1}, edge{s.to, -1})
		}
		sort.Slice(edges, func(a, b int) bool {
			if !edges[a].t.Equal(edges[b].t) {
				return edges[a].t.Before(edges[b].t)
			}
			return edges[a].d < edges[b].d
		})
		n := 0
		for _, e := range edges {
			n += e.d
			sum.PeakConcurrency = max(sum.PeakConcurrency, n)
		}
	}
	for k, n := range agentRuns {
		rep.Agents = append(rep.Agents, AgentRuns{Node: k[0], Agent: k[1], Runs: n})
	}
	sort.Slice(rep.Agents, func(i, j int) bool {
		a, b := rep.Agents[i], rep.Agents[j]
		if a.Runs != b.Runs {
			return a.Runs > b.Runs
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Agent < b.Agent
	})
	return rep, nil
}

// classify says what the safety controls made of a run, and when it
// started to act.
func classify(rec *runbooks.RunRecord) (string, time.Time) {
	switch rec.Outcome {
	case runbooks.OutcomeLimited, runbooks.OutcomeCircuitOpen, runbooks.OutcomeShadowed:
		return rec.Outcome, time.Time{}
	}
	for _, s := range rec.Steps {
		switch {
		case s.Name == "approval" && rec.Outcome == runbooks.OutcomeExpired:
			return runbooks.OutcomePendingApproval, time.Time{}
		case s.Name == "budget" && !s.OK && strings.Contains(s.Detail, "exhausted"):
			return "budget_exhausted", time.Time{}
		case strings.HasPrefix(s.Name, "repair:"), s.Name == "restart", s.Name == "switchover":
			return "would_act", s.Started
		}
	}
	return rec.Outcome, time.Time{}
}

// WriteJSON prints the report as one JSON object.
func (rep *BacktestReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText prints the report for people.
func (rep *BacktestReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "backtest of %s to %s (%s), each run lasting %s\n", rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339),
		shortDur(rep.To.Sub(rep.From)), shortDur(rep.runDuration))
	fmt.Fprintf(&b, "%d episodes: %d unmatched (no runbook), %d unroutable (no node)\n\n", rep.Episodes, rep.Unmatched, rep.Unroutable)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNBOOK\tRUNS\tAGENTS\tPEAK\tWOULD ACT\tLIMITED\tCIRCUIT OPEN\tBUDGET EXHAUSTED\tSHADOWED\tPENDING APPROVAL\tOTHER")
	for _, s := range rep.Runbooks {
		o := s.Outcomes
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Runbook, s.Runs, s.Agents, s.PeakConcurrency,
			o.WouldAct, o.Limited, o.CircuitOpen, o.BudgetExhausted, o.Shadowed, o.PendingApproval, otherText(rep.other[s.Runbook]))
	}
	_ = tw.Flush()
	b.WriteString("\ntop agents by runs:\n")
	if len(rep.Agents) == 0 {
		b.WriteString("  none\n")
	}
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for i, a := range rep.Agents {
		if i == 10 {
			break
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", a.Node, a.Agent, a.Runs)
	}
	_ = tw.Flush()
	b.WriteString(rep.hourly())
	_, err := io.WriteString(w, b.String())
	return err
}

func otherText(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// hourly prints runs per hour: a row of 24 counts per day.
func (rep *BacktestReport) hourly() string {
	var b strings.Builder
	total, peak := 0, 0
	var peakAt time.Time
	for h, n := range rep.runsPerHour {
		total += n
		if n > peak || (n == peak && h.Before(peakAt)) {
			peak, peakAt = n, h
		}
	}
	hours := max(int(rep.To.Sub(rep.From).Hours()), 1)
	fmt.Fprintf(&b, "\nruns per hour: %d runs over %d h, mean %.2f", total, hours, float64(total)/float64(hours))
	if peak > 0 {
		fmt.Fprintf(&b, ", peak %d at %s", peak, peakAt.Format("2006-01-02 15:00Z"))
	}
	b.WriteString("\n")
	if total == 0 {
		return b.String()
	}
	b.WriteString("  day (UTC)    00 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16 17 18 19 20 21 22 23\n")
	for d := rep.From.Truncate(24 * time.Hour); d.Before(rep.To); d = d.Add(24 * time.Hour) {
		fmt.Fprintf(&b, "  %s", d.Format("2006-01-02"))
		for h := 0; h < 24; h++ {
			if n := rep.runsPerHour[d.Add(time.Duration(h)*time.Hour)]; n > 0 {
				fmt.Fprintf(&b, " %2d", n)
			} else {
				b.WriteString("  .")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func shortDur(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0 && d > 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0 && d > 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0 && d > 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
