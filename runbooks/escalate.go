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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
)

// maxWebhookResponse bounds how much of an escalation webhook's answer is
// read (and kept in the step's output).
const maxWebhookResponse = 4 << 10

// DefaultEscalationRetryFor bounds how long an escalation that fails to
// deliver is retried (with backoff) before it is given up as failed, when
// the escalate block does not say (retry_for).
const DefaultEscalationRetryFor = hcl.DefaultEscalateRetryFor

// The escalation status of a record (RunRecord.Escalation): every target of
// the escalate block delivered; a target failed and is being retried; a
// target still failed when its retries ran out (or the run was stopped).
const (
	EscalationDelivered = "delivered"
	EscalationRetrying  = "retrying"
	EscalationFailed    = "failed"
)

// maxEscalationBackoff caps the wait between two attempts.
const maxEscalationBackoff = 30 * time.Second

// Escalation is the JSON an escalation webhook receives and an escalation
// command reads on stdin.
type Escalation struct {
	Reason string      `json:"reason"`
	Run    *RunRecord  `json:"run"`
	Alert  alert.Alert `json:"alert"`
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
	x := Escalator{
		Client: r.e.client, Now: r.e.opts.Now, KillGrace: r.e.opts.KillGrace, Exec: r.e.opts.Exec, Sleep: r.e.opts.Sleep,
		Runbook: r.rb.Name, Metrics: r.e.metrics.escalations,
		// The record says "retrying" while a target is retried, so that
		// the status page and the runs API show it.
		Retrying: func(failed Step) {
			r.redactStep(&failed)
			r.rec.Escalation = EscalationRetrying
			snap := r.rec.Steps
			r.rec.Steps = append(append([]Step(nil), snap...), failed)
			r.progress(OutcomeEscalated, reason)
			r.rec.Steps = snap
		},
	}
	steps, status := x.Send(r.ctx, esc, r.rec.ID, body, r.env(""))
	for _, s := range steps {
		r.redactStep(&s)
		r.rec.Steps = append(r.rec.Steps, s)
		r.log.Debug("step", "step", s.Name, "ok", s.OK, "detail", s.Detail, "error", s.Error)
	}
	r.rec.Escalation = status
	r.rec.Finished = r.e.opts.Now()
	r.rec.Duration = r.rec.Finished.Sub(r.rec.Started).Seconds()
}

// noRedirects is the default escalation client: an escalation goes where it
// was configured to go, not where a redirect points.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Escalator delivers an escalation to the targets of an escalate block.
// The engine uses it for its runs and the bridge for the records it makes
// itself (unroutable alerts, expired jobs), so receivers get the same
// thing either way.
//
// A target that fails to deliver (a webhook that cannot be reached, times
// out or answers other than 2xx; a command that exits non-zero or times
// out) is tried again, with a backoff that starts at Backoff and doubles
// up to 30s, until it delivers or RetryFor has passed since the first
// attempt. Targets are tried side by side.
type Escalator struct {
	Client    *http.Client
	Now       func() time.Time
	KillGrace time.Duration
	// Exec runs the escalation command; nil means execx.Run.
	Exec ExecFunc
	// Sleep waits between attempts (the engine's clock); nil: real time.
	Sleep func(ctx context.Context, d time.Duration) error
	// RetryFor, when not zero, overrides the escalate block's retry_for
	// (negative: one attempt only).
	RetryFor time.Duration
	// Backoff is the first wait between two attempts; 0 means 1s.
	Backoff time.Duration
	// Runbook and Metrics: medic_escalations_total{runbook,result} (nil:
	// not counted).
	Runbook string
	Metrics *prometheus.CounterVec
	// Retrying, when set, hears a target's failed attempt each time it is
	// to be tried again (one call at a time).
	Retrying func(failed Step)
}

// Send POSTs body to esc's webhook and runs esc's command with body on
// stdin and env in its environment, each attempt bounded by esc's timeout
// and retried as the Escalator says. It returns one "escalate" step per
// target (its last attempt) and the escalation status: EscalationDelivered
// when every target delivered, else EscalationFailed.
func (x Escalator) Send(ctx context.Context, esc *hcl.Escalate, runID string, body []byte, env map[string]string) ([]Step, string) {
	if x.Now == nil {
		x.Now = time.Now
	}
	if x.Client == nil {
		x.Client = noRedirects
	}
	if x.Exec == nil {
		x.Exec = runExec
	}
	if x.Sleep == nil {
		x.Sleep = sleepCtx
	}
	timeout := esc.Timeout
	if timeout <= 0 {
		timeout = hcl.DefaultEscalateTimeout
	}
	var tries []func() Step
	if esc.Webhook != "" {
		tries = append(tries, func() Step { return x.webhook(ctx, esc.Webhook, runID, body, timeout) })
	}
	if len(esc.Command) > 0 {
		tries = append(tries, func() Step { return x.command(ctx, esc, body, env, timeout) })
	}
	steps := make([]Step, len(tries))
	var mu sync.Mutex // one Retrying call at a time
	var wg sync.WaitGroup
	if x.RetryFor == 0 {
		x.RetryFor = esc.RetryFor
		if x.RetryFor == 0 {
			x.RetryFor = -1
		}
	}
	for i, try := range tries {
		wg.Go(func() { steps[i] = x.retry(ctx, try, &mu) })
	}
	wg.Wait()
	status := EscalationDelivered
	for _, s := range steps {
		if !s.OK {
			status = EscalationFailed
		}
	}
	return steps, status
}

// retry runs try until it delivers or the retries run out.
func (x Escalator) retry(ctx context.Context, try func() Step, mu *sync.Mutex) Step {
	retryFor := x.RetryFor
	wait := x.Backoff
	if wait <= 0 {
		wait = time.Second
	}
	giveUp := x.Now().Add(retryFor)
	for attempt := 1; ; attempt++ {
		s := try()
		if s.OK {
			x.count("delivered")
			if attempt > 1 {
				s.Detail += fmt.Sprintf(" (delivered at attempt %d)", attempt)
			}
			return s
		}
		if retryFor < 0 || ctx.Err() != nil || x.Now().Add(wait).After(giveUp) {
			x.count("failed")
			if attempt > 1 || retryFor > 0 {
				s.Detail += fmt.Sprintf(" (failed %d attempt(s) over %s; given up)", attempt, x.Now().Sub(giveUp.Add(-retryFor)).Round(time.Second))
			}
			return s
		}
		x.count("retried")
		if x.Retrying != nil {
			mu.Lock()
			x.Retrying(s)
			mu.Unlock()
		}
		_ = x.Sleep(ctx, wait)
		wait = min(2*wait, maxEscalationBackoff)
	}
}

func (x Escalator) count(result string) {
	if x.Metrics != nil {
		x.Metrics.WithLabelValues(x.Runbook, result).Inc()
	}
}

func (x Escalator) command(ctx context.Context, esc *hcl.Escalate, body []byte, env map[string]string, timeout time.Duration) Step {
	s := Step{Name: "escalate", Started: x.Now()}
	res := x.Exec(ctx, "escalate", execx.Cmd{
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
	return x.finish(s, res.OK(), detail, res.Err)
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
