package hcl

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/prometheus/common/model"

	"github.com/medicops/medic/alert"
)

// SourceText returns the source bytes a range covers, e.g. a condition as
// its author wrote it.
func (c *Config) SourceText(r hcl2.Range) string {
	src := c.Sources[r.Filename]
	if r.Start.Byte < 0 || r.End.Byte > len(src) || r.Start.Byte > r.End.Byte {
		return ""
	}
	return string(src[r.Start.Byte:r.End.Byte])
}

// Unroutable is what a plan prints as the node of an alert the router
// cannot send anywhere.
const Unroutable = "unroutable"

// AlertPlan is what medic would do for one alert: where the router
// (package route) sends it, and what would run there.
type AlertPlan struct {
	Alert alert.Alert
	// Ignored, when set, says why nothing runs; the fields below are then
	// only partly set.
	Ignored string
	// Skipped explains every runbook before the matching one.
	Skipped []string
	Runbook *Runbook
	Agent   string
	// AgentError says why the runbook's agent expression gave no agent.
	AgentError string
	// Node is "" when the alert cannot be routed; Unroutable then says why.
	Node       string
	Unroutable string
	// NodeFrom says where Node came from.
	NodeFrom string
	// Steps are the lifecycle steps, in order, as text.
	Steps []string
	// Budget is the restart budget, as text.
	Budget string
	// Mode is the runbook's mode with what it means, as text.
	Mode string
	// Limits are the runbook's concurrency, circuit, silence and redaction,
	// as text, one per line.
	Limits []string
}

// Explain fills in what would happen for a routed alert (p's Alert,
// Skipped, Runbook, Agent, AgentError, Node, NodeFrom and Unroutable, as
// route.Plan sets them): why it is ignored, or the steps, budget, mode and
// limits. It decides nothing about routing.
func (c *Config) Explain(p *AlertPlan) {
	switch p.Alert.Status {
	case "firing":
	case "resolved":
		p.Ignored = "resolved: medic acts on firing alerts only"
		return
	default:
		// The bridge refuses such a payload (400): say so rather than plan
		// a run that would never happen.
		p.Ignored = fmt.Sprintf("status %q is neither \"firing\" nor \"resolved\": the bridge would refuse the payload (400)", p.Alert.Status)
		return
	}
	rb := p.Runbook
	if rb == nil {
		p.Ignored = "no runbook matches"
		return
	}
	p.Mode = modeText(rb)
	if p.Node == "" {
		p.Ignored = fmt.Sprintf("unroutable: %s; the bridge records the alert as \"unroutable\" and escalates it", p.Unroutable)
		return
	}
	if p.AgentError != "" {
		p.Ignored = fmt.Sprintf("runbook %q names no agent: %s; node %s records the run as \"skipped\"", rb.Name, p.AgentError, p.Node)
		return
	}
	agent := c.Agent(p.Agent)
	if agent == nil {
		p.Ignored = fmt.Sprintf("agent %q is not defined in the loaded configuration; node %s records the run as \"skipped\"", p.Agent, p.Node)
		return
	}
	if rb.Switchover != nil {
		c.planSwitchover(p, rb, agent)
		return
	}
	c.planRecovery(p, rb, agent)
	p.Limits = c.limitsText(rb, p.Alert)
}

func modeText(rb *Runbook) string {
	switch rb.Mode {
	case ModeShadow:
		return "shadow (samples and diagnoses, records what it would run, runs no repair, restart or switchover; outcome \"shadowed\")"
	case ModeApprove:
		return fmt.Sprintf("approve (samples and diagnoses, then waits up to %s for an operator to approve before acting; else outcome \"rejected\" or \"expired\")", dur(rb.ApprovalTTL))
	default:
		return "auto"
	}
}

func (c *Config) limitsText(rb *Runbook, alert alert.Alert) []string {
	var out []string
	if cc := rb.Concurrency; cc != nil {
		key, limit, agents, err := c.ConcurrencyLimit(rb, alert)
		keyText := "the whole runbook"
		if cc.Key != nil {
			keyText = fmt.Sprintf("key %s = %q", c.SourceText(cc.Key.Range()), key)
		}
		var caps []string
		if cc.Max > 0 {
			caps = append(caps, fmt.Sprintf("max %d", cc.Max))
		}
		if cc.MaxRatio > 0 {
			caps = append(caps, fmt.Sprintf("max_ratio %s of %d matching agents", ratio(cc.MaxRatio), agents))
		}
		line := fmt.Sprintf("concurrency at most %d runs at once across all nodes for %s (%s); excess runs wait up to %s (queue %d), then escalate with outcome \"limited\"",
			limit, keyText, strings.Join(caps, ", "), dur(cc.Wait), cc.Queue)
		if err != nil {
			line = fmt.Sprintf("concurrency key cannot be evaluated for this alert (%v): the run would fail", err)
		}
		out = append(out, line)
	}
	if cb := rb.Circuit; cb != nil {
		out = append(out, fmt.Sprintf("circuit     past %d runs per agent within %s, escalate at once with outcome \"circuit_open\" until the window passes or an operator resets the agent", cb.MaxRuns, dur(cb.Window)))
	}
	if s := rb.Silence; s != nil {
		out = append(out, fmt.Sprintf("silence     silence the alert in Alertmanager %s for %s while the run acts; expired when it ends without escalating", s.Alertmanager, dur(s.Duration)))
	}
	if len(rb.Redact) > 0 {
		pats := make([]string, len(rb.Redact))
		for i, re := range rb.Redact {
			pats[i] = strconv.Quote(re.String())
		}
		out = append(out, "redact      "+strings.Join(pats, ", ")+" → [REDACTED] in step output and escalations")
	}
	return out
}

func (c *Config) planSwitchover(p *AlertPlan, rb *Runbook, agent *Agent) {
	poolName, err := rb.Switchover.PoolName(p.Alert)
	if err != nil {
		p.Ignored = fmt.Sprintf("runbook %q names no pool: %v", rb.Name, err)
		return
	}
	pool := c.Pool(poolName)
	if pool == nil {
		p.Ignored = fmt.Sprintf("pool %q is not defined in the loaded configuration", poolName)
		return
	}
	p.Steps = append(p.Steps, fmt.Sprintf("switchover  through the bridge's pool coordinator, pool %s (agents %s): set lock, choose a healthy agent other than %s, move its undelivered messages in order, drain the buffer, clear lock",
		pool.Name, strings.Join(pool.Agents, ", "), agent.Name))
	p.Steps = append(p.Steps, "escalate    if no healthy agent is left: "+escalateText(rb.Escalate))
}

func (c *Config) planRecovery(p *AlertPlan, rb *Runbook, a *Agent) {
	restart := "restart     medic node restarts its child: " + ArgvText(a.Command)
	if !a.Supervised() {
		restart = "restart     " + ArgvText(a.Start)
		if len(a.Stop) > 0 {
			restart = "restart     stop " + ArgvText(a.Stop) + ", then start " + ArgvText(a.Start)
		}
	}
	identity := "medic node's own child"
	if !a.Supervised() {
		identity = "pidfile " + a.Pidfile
	}
	step := func(format string, args ...any) {
		p.Steps = append(p.Steps, fmt.Sprintf(format, args...))
	}
	step("liveness    check %s's process (%s, PID and start time); dead → restart", a.Name, identity)
	// medic node's probe fails on an overdue registered heartbeat before it
	// runs the functional probe; with neither, liveness stands in.
	var checks []string
	if a.Heartbeat != nil {
		checks = append(checks, fmt.Sprintf("heartbeat not older than %s (when registered)", dur(a.Heartbeat.Timeout)))
	}
	if a.Probe != nil {
		checks = append(checks, probeText(a.Probe))
	}
	if len(checks) > 0 {
		step("probe       %s; passes → outcome \"healthy\", nothing else runs", strings.Join(checks, ", then "))
	} else {
		step("probe       none configured: liveness stands in for it")
	}
	disk := "the root file system"
	if a.Workdir != "" {
		disk = a.Workdir
	}
	if len(rb.Causes) == 0 {
		step("diagnose    no causes: restart alone")
	} else {
		lines := []string{fmt.Sprintf("diagnose    sample usage (memory, cpu, disk of %s; thresholds memory %s, cpu %s, disk %s) and test each cause:",
			disk, ratio(a.Thresholds.Memory), ratio(a.Thresholds.CPU), ratio(a.Thresholds.Disk))}
		for _, cause := range rb.Causes {
			repair := "no repair (restart only)"
			if len(cause.Repair) > 0 {
				repair = fmt.Sprintf("repair %s (timeout %s)", ArgvText(cause.Repair), dur(cause.Timeout))
			}
			lines = append(lines, fmt.Sprintf("cause %s: when %s → %s", cause.Name, c.SourceText(cause.When.Range()), repair))
		}
		p.Steps = append(p.Steps, strings.Join(lines, "\n"))
		step("repair      run the repair of every cause that holds (none holds → restart alone)")
	}
	p.Steps = append(p.Steps, restart)
	if len(checks) > 0 {
		step("verify      probe up to %d times, %s apart; passes → outcome \"recovered\"", rb.Verify.Attempts, dur(rb.Verify.Interval))
	} else {
		step("verify      liveness up to %d times, %s apart; alive → outcome \"recovered\"", rb.Verify.Attempts, dur(rb.Verify.Interval))
	}
	step("escalate    still failing → %s; outcome \"escalated\"", escalateText(rb.Escalate))
	p.Budget = fmt.Sprintf("at most %d restarts of %s per %s; beyond that escalate without restarting", rb.Budget.Restarts, a.Name, dur(rb.Budget.Window))
}

func escalateText(e *Escalate) string {
	if e == nil {
		return "no escalation target configured"
	}
	var targets []string
	if e.Webhook != "" {
		targets = append(targets, "POST "+e.Webhook)
	}
	if len(e.Command) > 0 {
		targets = append(targets, "run "+ArgvText(e.Command))
	}
	return fmt.Sprintf("%s (timeout %s)", strings.Join(targets, " and "), dur(e.Timeout))
}

// ArgvText shows an argv list the way HCL spells it, ["a", "b"], so that
// nobody reads it as a shell command.
func ArgvText(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = strconv.Quote(a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func ratio(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// alertText names an alert the way Prometheus prints a series.
func alertText(a alert.Alert) string {
	keys := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = fmt.Sprintf("%s=%q", k, a.Labels[k])
	}
	return a.Labels["alertname"] + "{" + strings.Join(pairs, ", ") + "}"
}

// nameText prints an agent or node name taken from an alert's labels as it
// is, or quoted when it is empty or holds spaces, quotes or characters a
// terminal would act on, so that a label value cannot forge a line.
func nameText(s string) string {
	if s == "" || s == Unroutable || strings.ContainsFunc(s, func(r rune) bool { return r == ' ' || r == '"' || !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// WritePlan prints plans for people.
func WritePlan(w io.Writer, plans []AlertPlan) error {
	var b strings.Builder
	for i, p := range plans {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "alert %d: %s\n", i+1, alertText(p.Alert))
		status := p.Alert.Status
		if !p.Alert.StartsAt.IsZero() {
			status += " since " + p.Alert.StartsAt.UTC().Format(time.RFC3339)
		}
		if p.Alert.Fingerprint != "" {
			status += ", fingerprint " + p.Alert.Fingerprint
		}
		fmt.Fprintf(&b, "  status:   %s\n", status)
		if p.Runbook != nil {
			fmt.Fprintf(&b, "  runbook:  %s (%s)\n", p.Runbook.Name, posString(p.Runbook.DeclRange))
		}
		for _, s := range p.Skipped {
			fmt.Fprintf(&b, "  skipped:  %s\n", s)
		}
		if p.Runbook != nil {
			// Where the router sends it, whatever happens there.
			fmt.Fprintf(&b, "  agent:    %s\n", nameText(p.Agent))
			if p.Node == "" {
				fmt.Fprintf(&b, "  node:     %s (%s)\n", Unroutable, p.Unroutable)
			} else {
				fmt.Fprintf(&b, "  node:     %s (%s)\n", nameText(p.Node), p.NodeFrom)
			}
		}
		if p.Ignored != "" {
			fmt.Fprintf(&b, "  ignored:  %s\n", p.Ignored)
			continue
		}
		if p.Mode != "" {
			fmt.Fprintf(&b, "  mode:     %s\n", p.Mode)
		}
		b.WriteString("  steps:\n")
		for n, s := range p.Steps {
			lines := strings.Split(s, "\n")
			fmt.Fprintf(&b, "    %d. %s\n", n+1, lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(&b, "%s%s\n", strings.Repeat(" ", len("    1. diagnose    ")), l)
			}
		}
		if p.Budget != "" {
			fmt.Fprintf(&b, "  budget:   %s\n", p.Budget)
		}
		for _, l := range p.Limits {
			fmt.Fprintf(&b, "  limit:    %s\n", l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// dur prints a duration the way it is written in HCL: "1h", not "1h0m0s".
func dur(d time.Duration) string { return model.Duration(d).String() }
