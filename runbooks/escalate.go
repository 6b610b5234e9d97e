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
)

// maxWebhookResponse bounds how much of an escalation webhook's answer is
// read (and kept in the step's output).
const maxWebhookResponse = 4 << 10

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
	timeout := esc.Timeout
	if timeout <= 0 {
		timeout = hcl.DefaultEscalateTimeout
	}
	// The receiver gets the record as it stands, outcome included.
	r.rec.Finished = r.e.opts.Now()
	r.rec.Duration = r.rec.Finished.Sub(r.rec.Started).Seconds()
	body, err := json.Marshal(Escalation{Reason: reason, Run: r.rec, Alert: r.req.Alert})
	if err != nil {
		s := r.step("escalate")
		r.done(s, false, "", fmt.Errorf("encode run record: %w", err))
		return
	}
	if esc.Webhook != "" {
		r.escalateWebhook(esc.Webhook, body, timeout)
	}
	if len(esc.Command) > 0 {
		s := r.step("escalate")
		res := r.script(s, esc.Command, r.env(""), timeout, body)
		detail := fmt.Sprintf("command %s exited %d", esc.Command[0], res.ExitCode)
		if res.TimedOut {
			detail = fmt.Sprintf("command %s timed out after %s; its process group was killed", esc.Command[0], timeout)
		}
		r.done(s, res.OK(), detail, res.Err)
	}
}

func (r *run) escalateWebhook(target string, body []byte, timeout time.Duration) {
	s := r.step("escalate")
	shown := target
	if u, err := url.Parse(target); err == nil {
		u.RawQuery = ""
		shown = u.Redacted()
	}
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		r.done(s, false, "webhook "+shown, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "medic")
	req.Header.Set("X-Medic-Run-Id", r.rec.ID)
	resp, err := r.e.client.Do(req)
	if err != nil {
		r.done(s, false, "webhook "+shown, err)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxWebhookResponse))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	code := resp.StatusCode
	s.Output = strings.TrimSpace(string(answer))
	detail := fmt.Sprintf("webhook %s answered %s", shown, resp.Status)
	if code < 200 || code > 299 {
		r.done(s, false, detail, fmt.Errorf("webhook answered %d", code))
		return
	}
	r.done(s, true, detail, nil)
}
