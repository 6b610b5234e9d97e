package bridge

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// deadNode records the alert of job, for a node the enqueue script found
// unknown or long silent (seen: its last-seen time in Unix ms, "" for
// never), as unroutable, and escalates it: the job was not queued, and its
// episode is taken. If the record cannot be stored the episode is given
// back, so that Alertmanager's retry records it.
func (b *Bridge) deadNode(ctx context.Context, deadline time.Time, job *jobs.Job, rb *hcl.Runbook, seen string) error {
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
