package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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
// unroutable alert) through the runbook's escalate block, with the same
// payload the engine sends (runbooks.Escalation), and stores the record
// again with the escalation steps.
func (b *Bridge) escalate(rb *hcl.Runbook, rec *runbooks.RunRecord, a hcl.Alert) {
	esc := rb.Escalate
	if esc == nil || (esc.Webhook == "" && len(esc.Command) == 0) {
		return
	}
	timeout := esc.Timeout
	if timeout <= 0 {
		timeout = hcl.DefaultEscalateTimeout
	}
	body, err := json.Marshal(runbooks.Escalation{Reason: rec.Reason, Run: rec, Alert: a})
	if err != nil {
		return
	}
	var steps []runbooks.Step
	if esc.Webhook != "" {
		steps = append(steps, b.escalateWebhook(esc.Webhook, rec.ID, body, timeout))
	}
	if len(esc.Command) > 0 {
		env := execx.LabelEnv(a.Labels)
		env["MEDIC_AGENT"] = rec.Agent
		env["MEDIC_RUN_ID"] = rec.ID
		env["MEDIC_RUNBOOK"] = rec.Runbook
		env["MEDIC_TRIGGER"] = rec.Trigger
		s := runbooks.Step{Name: "escalate", Started: b.opts.Now()}
		res := execx.Run(context.Background(), execx.Cmd{
			Argv: esc.Command, Env: env, Timeout: timeout, MaxOutput: runbooks.MaxStepOutput, Stdin: body,
		})
		code := res.ExitCode
		s.ExitCode = &code
		s.Output = res.Output
		s.Duration = res.Duration.Seconds()
		s.OK = res.OK()
		s.Detail = fmt.Sprintf("command %s exited %d", esc.Command[0], res.ExitCode)
		if res.Err != nil {
			s.Error = res.Err.Error()
		}
		steps = append(steps, s)
	}
	rec.Steps = append(rec.Steps, steps...)
	rec.Finished = b.opts.Now()
	rec.Duration = rec.Finished.Sub(rec.Started).Seconds()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.store.Save(ctx, rec); err != nil {
		b.log.Error("store escalation steps", "run", rec.ID, "err", err)
	}
}

func (b *Bridge) escalateWebhook(target, id string, body []byte, timeout time.Duration) runbooks.Step {
	s := runbooks.Step{Name: "escalate", Started: b.opts.Now()}
	shown := target
	if u, err := url.Parse(target); err == nil {
		u.RawQuery = ""
		shown = u.Redacted()
	}
	finish := func(ok bool, detail string, err error) runbooks.Step {
		s.Duration = b.opts.Now().Sub(s.Started).Seconds()
		s.OK, s.Detail = ok, detail
		if err != nil {
			s.Error = err.Error()
		}
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return finish(false, "webhook "+shown, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "medic")
	req.Header.Set("X-Medic-Run-Id", id)
	resp, err := b.client.Do(req)
	if err != nil {
		return finish(false, "webhook "+shown, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	s.Output = strings.TrimSpace(string(answer))
	detail := fmt.Sprintf("webhook %s answered %s", shown, resp.Status)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return finish(false, detail, fmt.Errorf("webhook answered %d", resp.StatusCode))
	}
	return finish(true, detail, nil)
}
