package bridge

import (
	"context"
	"encoding/json"
	"time"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
	"github.com/medicops/medic/runbooks"
)

// escalate tells humans about a record the bridge made itself (an
// unroutable alert, an expired job) through the runbook's escalate block,
// exactly as the engine escalates its runs, retries included, and stores
// the record again with the escalation steps and status (while a target is
// retried, with status "retrying").
//
// It returns the escalation status ("" when the runbook has no target).
// Close cuts its retries short (status failed).
func (b *Bridge) escalate(rb *hcl.Runbook, rec *runbooks.RunRecord, a alert.Alert) string {
	esc := rb.Escalate
	if esc == nil || (esc.Webhook == "" && len(esc.Command) == 0) {
		return ""
	}
	body, err := json.Marshal(runbooks.Escalation{Reason: rec.Reason, Run: rec, Alert: a})
	if err != nil {
		return runbooks.EscalationFailed
	}
	env := execx.LabelEnv(a.Labels)
	env["MEDIC_AGENT"] = rec.Agent
	env["MEDIC_RUN_ID"] = rec.ID
	env["MEDIC_RUNBOOK"] = rec.Runbook
	env["MEDIC_TRIGGER"] = rec.Trigger
	save := func(r *runbooks.RunRecord) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.store.Save(ctx, r); err != nil {
			b.log.Error("store escalation steps", "run", r.ID, "err", err)
		}
	}
	x := runbooks.Escalator{
		Client: b.client, Now: b.opts.Now, RetryFor: b.opts.EscalationRetryFor, Backoff: b.opts.EscalationBackoff,
		Runbook: rb.Name, Metrics: b.metrics.runs.Escalations(),
		Retrying: func(failed runbooks.Step) {
			snap := *rec
			snap.Steps = append(append([]runbooks.Step(nil), rec.Steps...), failed)
			snap.Escalation = runbooks.EscalationRetrying
			save(&snap)
			b.log.Warn("escalation not delivered; retrying", "run", rec.ID, "detail", failed.Detail, "err", failed.Error)
		},
	}
	steps, status := x.Send(b.bgCtx, esc, rec.ID, body, env)
	rec.Steps = append(rec.Steps, steps...)
	rec.Escalation = status
	rec.Finished = b.opts.Now()
	rec.Duration = rec.Finished.Sub(rec.Started).Seconds()
	if status != runbooks.EscalationDelivered {
		b.log.Error("escalation failed: its retries ran out or the bridge stopped", "run", rec.ID, "runbook", rb.Name)
	}
	save(rec)
	return status
}
