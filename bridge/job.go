package bridge

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/runbooks"
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

// DefaultNodeSilence is how long a node may go without a state snapshot
// before `medic bridge` stops routing jobs to it (--bridge.node-silence).
// Sixty missed snapshots (one every 5s) is not a hiccup.
const DefaultNodeSilence = 5 * time.Minute

// MinNodeSilence is the shortest node silence `medic bridge` accepts: three
// snapshot intervals, so that one slow or lost snapshot never makes a live
// node unroutable.
const MinNodeSilence = 15 * time.Second

// deadNode records the alert of job, for a node the enqueue script found
// unknown or long silent (seen: its last-seen time in Unix ms, "" for
// never), as unroutable, and escalates it: the job was not queued, and its
// episode is taken. If the record cannot be stored the episode is given
// back, so that Alertmanager's retry records it.
func (b *Bridge) deadNode(ctx context.Context, deadline time.Time, job *Job, rb *hcl.Runbook, seen string) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	a := job.Alert
	reason := fmt.Sprintf("node %s is unknown: it has never written a state snapshot and has no job stream; the job was not queued", job.Node)
	if ms, err := strconv.ParseInt(seen, 10, 64); err == nil {
		last := time.UnixMilli(ms).UTC()
		reason = fmt.Sprintf("node %s was last seen at %s (%s ago), longer ago than the node silence of %s; the job was not queued",
			job.Node, last.Format(time.RFC3339), job.Enqueued.Sub(last).Round(time.Second), b.opts.NodeSilence)
	}
	rec := &runbooks.RunRecord{
		ID: job.ID, Runbook: job.Runbook, Agent: job.Agent, Node: job.Node, Trigger: runbooks.TriggerAlert,
		Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Labels: a.Labels, Steps: []runbooks.Step{},
		Outcome: runbooks.OutcomeUnroutable, Reason: reason, Started: job.Enqueued, Finished: job.Enqueued,
	}
	if err := b.store.Save(ctx, rec); err != nil {
		b.opts.Client.Del(context.WithoutCancel(ctx), b.opts.Keys.Dedup(job.Node, a.Fingerprint, a.StartsAt))
		return fmt.Errorf("record unroutable alert for node %s: %w", job.Node, err)
	}
	b.metrics.unroutable.Inc()
	b.metrics.observe(rec)
	b.log.Warn("alert unroutable: node not live", "run", rec.ID, "runbook", rec.Runbook, "agent", rec.Agent, "node", job.Node, "reason", reason)
	b.bg.Go(func() { b.escalate(rb, rec, a) })
	return nil
}
