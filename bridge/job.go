package bridge

import (
	"fmt"
	"strings"
	"time"

	"github.com/medicops/medic/hcl"
)

// DefaultJobDeadline is how long a queued job may wait for its node before
// it is recorded as expired instead of run late.
const DefaultJobDeadline = 10 * time.Minute

// DefaultDedupTTL is how long an alert episode is remembered.
const DefaultDedupTTL = 24 * time.Hour

// Job is one remediation request on a node's stream (field "job", JSON).
type Job struct {
	// ID is the run id; the run record is stored under it, so a job run
	// again after its node crashed keeps one record.
	ID       string    `json:"id"`
	Runbook  string    `json:"runbook"`
	Agent    string    `json:"agent"`
	Node     string    `json:"node"`
	Alert    hcl.Alert `json:"alert"`
	Enqueued time.Time `json:"enqueued"`
	Deadline time.Time `json:"deadline"`
}

// Route is where an alert's remediation goes.
type Route struct {
	Runbook *hcl.Runbook
	Agent   string
	// Node is empty when the alert cannot be routed; Reason says why.
	Node   string
	Reason string
}

// RouteAlert picks the runbook, agent and node for an alert. A nil Runbook
// means no runbook matches (the alert is ignored). The node is the alert's
// `node` label, else the target agent's `node` attribute.
func RouteAlert(cfg *hcl.Config, a hcl.Alert) Route {
	rb, _ := cfg.Match(a)
	if rb == nil {
		return Route{}
	}
	r := Route{Runbook: rb}
	agent, err := rb.TargetAgent(a)
	if err != nil {
		r.Reason = fmt.Sprintf("runbook %q: target agent: %v", rb.Name, err)
	}
	r.Agent = agent
	if n := a.Labels["node"]; n != "" {
		r.Node = n
		return r
	}
	switch ag := cfg.Agent(agent); {
	case agent == "":
		if r.Reason == "" {
			r.Reason = "the alert has no node label and names no agent"
		}
	case ag == nil:
		r.Reason = fmt.Sprintf("the alert has no node label and agent %q is not configured", agent)
	case ag.Node == "":
		r.Reason = fmt.Sprintf("the alert has no node label and agent %q has no node attribute", agent)
	default:
		r.Node = ag.Node
	}
	if r.Node != "" {
		r.Reason = ""
	}
	return r
}

// validNode keeps node names that become part of a Redis key sane.
func validNode(n string) bool {
	return n != "" && len(n) <= 253 && !strings.ContainsAny(n, "{}\x00\r\n")
}
