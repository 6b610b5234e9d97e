// Package route decides where an alert's remediation goes: which runbook,
// for which agent, on which node, or why it cannot be routed. It is the one
// router of medic, as alertmanager's dispatch package is Alertmanager's: the
// bridge's webhook, `medic plan`, `medic run`, `medic test` and `medic
// backtest` all call Decide, so none can send an alert where another would
// not (docs/design.md §8, "One decision path").
package route

import (
	"fmt"
	"strings"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
)

// Decision is where one alert's remediation goes.
type Decision struct {
	// Runbook is the first runbook that matches; nil: none does, and the
	// alert is ignored.
	Runbook *hcl.Runbook
	// Skipped explains every runbook before the matching one.
	Skipped []string
	// Agent is the runbook's target agent ("" when it names none).
	Agent string
	// AgentError says why the runbook's agent expression gave no agent.
	AgentError string
	// Node is the node whose stream gets the job; "" when the alert cannot
	// be routed, and Reason says why. NodeFrom says where Node came from.
	Node     string
	NodeFrom string
	Reason   string
}

// Decide picks the runbook, agent and node for an alert. The node is the
// alert's `node` label, else the target agent's `node` attribute; a name
// that cannot be part of a Redis key is refused. The alert's status plays no
// part: a resolved alert goes where its firing one went, to cancel it.
func Decide(cfg *hcl.Config, a alert.Alert) Decision {
	rb, skipped := cfg.Match(a)
	d := Decision{Runbook: rb, Skipped: skipped}
	if rb == nil {
		return d
	}
	agent, err := rb.TargetAgent(a)
	if err != nil {
		d.AgentError = err.Error()
		d.Reason = fmt.Sprintf("runbook %q: target agent: %v", rb.Name, err)
	}
	d.Agent = agent
	if n := a.Labels["node"]; n != "" {
		d.Node, d.NodeFrom = n, "the alert's node label"
	} else {
		switch ag := cfg.Agent(agent); {
		case agent == "":
			if d.Reason == "" {
				d.Reason = "the alert has no node label and names no agent"
			}
		case ag == nil:
			d.Reason = fmt.Sprintf("the alert has no node label and agent %q is not configured", agent)
		case ag.Node == "":
			d.Reason = fmt.Sprintf("the alert has no node label and agent %q has no node attribute", agent)
		default:
			d.Node, d.NodeFrom = ag.Node, fmt.Sprintf("agent %q's node attribute", agent)
		}
	}
	if d.Node != "" && !ValidNode(d.Node) {
		d.Reason = fmt.Sprintf("node name %q is not usable", d.Node)
		d.Node, d.NodeFrom = "", ""
	}
	if d.Node != "" {
		d.Reason = ""
	}
	return d
}

// ValidNode reports whether a node name is usable: it becomes part of a
// Redis key, so it is short and has no hash-tag braces or line breaks.
func ValidNode(n string) bool {
	return n != "" && len(n) <= 253 && !strings.ContainsAny(n, "{}\x00\r\n")
}

// Plan says, for every alert, where the router sends it and what would run
// there. It has no side effects: nothing is sampled, probed, run or sent.
func Plan(cfg *hcl.Config, alerts []alert.Alert) []hcl.AlertPlan {
	plans := make([]hcl.AlertPlan, 0, len(alerts))
	for _, a := range alerts {
		d := Decide(cfg, a)
		p := hcl.AlertPlan{
			Alert: a, Skipped: d.Skipped, Runbook: d.Runbook, Agent: d.Agent, AgentError: d.AgentError,
			Node: d.Node, NodeFrom: d.NodeFrom, Unroutable: d.Reason,
		}
		cfg.Explain(&p)
		plans = append(plans, p)
	}
	return plans
}
