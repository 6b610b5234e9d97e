package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
	"github.com/medicops/medic/runbooks"
)

func jsonMarshal(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return data, nil
}

// escalate tells humans about a record the bridge made itself (an
// unroutable alert) through the runbook's escalate block, exactly as the
// engine escalates its runs, and stores the record again with the
// escalation steps.
func (b *Bridge) escalate(rb *hcl.Runbook, rec *runbooks.RunRecord, a hcl.Alert) {
	esc := rb.Escalate
	if esc == nil || (esc.Webhook == "" && len(esc.Command) == 0) {
		return
	}
	body, err := json.Marshal(runbooks.Escalation{Reason: rec.Reason, Run: rec, Alert: a})
	if err != nil {
		return
	}
	env := execx.LabelEnv(a.Labels)
	env["MEDIC_AGENT"] = rec.Agent
	env["MEDIC_RUN_ID"] = rec.ID
	env["MEDIC_RUNBOOK"] = rec.Runbook
	env["MEDIC_TRIGGER"] = rec.Trigger
	x := runbooks.Escalator{Client: b.client, Now: b.opts.Now}
	rec.Steps = append(rec.Steps, x.Send(context.Background(), esc, rec.ID, body, env)...)
	rec.Finished = b.opts.Now()
	rec.Duration = rec.Finished.Sub(rec.Started).Seconds()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.store.Save(ctx, rec); err != nil {
		b.log.Error("store escalation steps", "run", rec.ID, "err", err)
	}
}
