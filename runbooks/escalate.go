package runbooks

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
)

// maxWebhookResponse bounds how much of an escalation webhook's answer is
// read (and kept in the step's output).
const maxWebhookResponse = 4 << 10

// DefaultEscalationRetryFor bounds how long an escalation that fails to
// deliver is retried (with backoff) before it is given up as failed.
const DefaultEscalationRetryFor = 5 * time.Minute

// Escalation is the JSON an escalation webhook receives and an escalation
// command reads on stdin.
type Escalation struct {
	Reason string     `json:"reason"`
	Run    *RunRecord `json:"run"`
	Alert  hcl.Alert  `json:"alert"`
}

// escalate tells humans: the outcome is "escalated" whether or not an
// escalate block is configured (the record and the metric say it anyway).
func (r *run) escalate(reason string) {
	r.finish(OutcomeEscalated, reason)
	esc := r.rb.Escalate
	if esc == nil || (esc.Webhook == "" && len(esc.Command) == 0) {
		s := r.step("escalate")
		r.done(s, true, "no escalate target configured; the run record is the escalation", nil)
		return
	}
	// The receiver gets the record as it stands, outcome included.
	r.rec.Finished = r.e.opts.Now()
	r.rec.Duration = r.rec.Finished.Sub(r.rec.Started).Seconds()
	// Step output in r.rec is redacted already; the alert's annotations
	// (descriptions often quote a log line) and the reason are too. The
	// patterns apply to the values, never to the JSON text, where a
	// pattern like password=\S+ would eat the quotes around it.
	alert := r.req.Alert
	if len(r.rb.Redact) > 0 && len(alert.Annotations) > 0 {
		ann := make(map[string]string, len(alert.Annotations))
		for k, v := range alert.Annotations {
			ann[k] = r.redact(v)
		}
		alert.Annotations = ann
	}
	body, err := json.Marshal(Escalation{Reason: r.redact(reason), Run: r.rec, Alert: alert})
	if err != nil {
		s := r.step("escalate")
		r.done(s, false, "", fmt.Errorf("encode run record: %w", err))
		return
	}
	x := Escalator{Client: r.e.client, Now: r.e.opts.Now, KillGrace: r.e.opts.KillGrace}
	for _, s := range x.Send(r.ctx, esc, r.rec.ID, body, r.env("")) {
		r.redactStep(&s)
		r.rec.Steps = append(r.rec.Steps, s)
		r.log.Debug("step", "step", s.Name, "ok", s.OK, "detail", s.Detail, "error", s.Error)
	}
}

// noRedirects is the default escalation client: an escalation goes where it
// was configured to go, not where a redirect points.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Escalator delivers an escalation to the targets of an escalate block.
// The engine uses it for its runs and the bridge for the records it makes
// itself (unroutable alerts), so receivers get the same thing either way.
type Escalator struct {
	Client    *http.Client
	Now       func() time.Time
	KillGrace time.Duration
}

// Send POSTs body to esc's webhook and runs esc's command with body on
// stdin and env in its environment, each bounded by esc's timeout, and
// returns one "escalate" step per target.
func (x Escalator) Send(ctx context.Context, esc *hcl.Escalate, runID string, body []byte, env map[string]string) []Step {
	if x.Now == nil {
		x.Now = time.Now
	}
	if x.Client == nil {
		x.Client = noRedirects
	}
	timeout := esc.Timeout
	if timeout <= 0 {
		timeout = hcl.DefaultEscalateTimeout
	}
	var steps []Step
	if esc.Webhook != "" {
		steps = append(steps, x.webhook(ctx, esc.Webhook, runID, body, timeout))
	}
	if len(esc.Command) > 0 {
		s := Step{Name: "escalate", Started: x.Now()}
		res := execx.Run(ctx, execx.Cmd{
			Argv: esc.Command, Env: env, Timeout: timeout, Grace: x.KillGrace, MaxOutput: MaxStepOutput, Stdin: body,
		})
		if res.ExitCode >= 0 || res.TimedOut {
			code := res.ExitCode
			s.ExitCode = &code
		}
		s.Output = res.Output
		detail := fmt.Sprintf("command %s exited %d", esc.Command[0], res.ExitCode)
		if res.TimedOut {
			detail = fmt.Sprintf("command %s timed out after %s; its process group was killed", esc.Command[0], timeout)
		}
		steps = append(steps, x.finish(s, res.OK(), detail, res.Err))
	}
	return steps
}

func (x Escalator) finish(s Step, ok bool, detail string, err error) Step {
	s.Duration = x.Now().Sub(s.Started).Seconds()
	s.OK, s.Detail = ok, detail
	if err != nil {
		s.Error = err.Error()
	}
	return s
}

func (x Escalator) webhook(ctx context.Context, target, runID string, body []byte, timeout time.Duration) Step {
	s := Step{Name: "escalate", Started: x.Now()}
	shown := target
	if u, err := url.Parse(target); err == nil {
		u.RawQuery = ""
		shown = u.Redacted()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return x.finish(s, false, "webhook "+shown, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "medic")
	req.Header.Set("X-Medic-Run-Id", runID)
	resp, err := x.Client.Do(req)
	if err != nil {
		return x.finish(s, false, "webhook "+shown, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxWebhookResponse))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	s.Output = strings.TrimSpace(string(answer))
	detail := fmt.Sprintf("webhook %s answered %s", shown, resp.Status)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return x.finish(s, false, detail, fmt.Errorf("webhook answered %d", resp.StatusCode))
	}
	return x.finish(s, true, detail, nil)
}
