package bridge

import (
	"context"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// The bridge runs the job stream's reclaim loop (jobs.Reclaimer): it takes
// a job nobody took before its deadline out of its stream; the bridge
// records it expired and escalates it.

// RunReclaim enforces the job deadline until ctx ends.
func (b *Bridge) RunReclaim(ctx context.Context) { b.reclaimer.Run(ctx) }

// ReclaimOnce runs one round over every known node's stream and outbox.
func (b *Bridge) ReclaimOnce(ctx context.Context) { b.reclaimer.Once(ctx) }

// Reclaimer is the bridge's reclaim loop.
func (b *Bridge) Reclaimer() *jobs.Reclaimer { return b.reclaimer }

// leaseFor is how long the bridge holds a job it took: its runbook's
// escalation retries (retry_for) and the two saves fit well within it.
func (b *Bridge) leaseFor(runbook string) time.Duration {
	retry := runbooks.DefaultEscalationRetryFor
	if rb := findRunbook(b.opts.Config(), runbook); rb != nil && rb.Escalate != nil {
		retry = rb.Escalate.RetryFor
	}
	if b.opts.EscalationRetryFor > 0 {
		retry = b.opts.EscalationRetryFor
	}
	return retry + 2*time.Minute
}

// expire records a job taken out of node's stream as expired, escalates it
// and removes it from the outbox, in the background.
func (b *Bridge) expire(node, raw string, job jobs.Job, entry string, started bool) {
	b.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec := jobs.ExpiredRecord(job, node, started, b.opts.Now())
		if err := b.store.Save(ctx, rec); err != nil {
			b.log.Error("reclaim: store the expired record; another round retries it", "run", job.ID, "err", err)
			return
		}
		b.metrics.observe(rec)
		b.log.Warn("job expired: reclaimed from its stream", "run", job.ID, "runbook", job.Runbook, "agent", job.Agent, "node", node, "entry", entry)
		if rb := findRunbook(b.opts.Config(), job.Runbook); rb != nil {
			if st := b.escalate(rb, rec, job.Alert); st != runbooks.EscalationDelivered && st != "" && b.bgCtx.Err() != nil {
				// Cut short by Close: left in the outbox, its lease runs
				// out and a bridge escalates it again.
				return
			}
		} else {
			b.log.Error("reclaim: runbook no longer configured; the expired record is the escalation", "run", job.ID, "runbook", job.Runbook)
		}
		if err := b.reclaimer.Done(context.WithoutCancel(ctx), node, raw); err != nil {
			b.log.Warn("reclaim: remove from the outbox; it may be escalated again", "run", job.ID, "err", err)
		}
	})
}

func findRunbook(cfg *hcl.Config, name string) *hcl.Runbook {
	if cfg == nil {
		return nil
	}
	for _, rb := range cfg.Runbooks {
		if rb.Name == name {
			return rb
		}
	}
	return nil
}
