package runbooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/medicops/medic/hcl"
)

// Silencer creates and expires Alertmanager silences through its v2 API,
// so that humans are not paged for an alert medic is remediating.
type Silencer struct {
	Client *http.Client // nil: a client that follows no redirects
}

// SilenceMatcher is one matcher of an Alertmanager v2 silence.
type SilenceMatcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual bool   `json:"isEqual"`
}

// PostableSilence is the body of POST /api/v2/silences.
type PostableSilence struct {
	Matchers  []SilenceMatcher `json:"matchers"`
	StartsAt  time.Time        `json:"startsAt"`
	EndsAt    time.Time        `json:"endsAt"`
	CreatedBy string           `json:"createdBy"`
	Comment   string           `json:"comment"`
}

// SilenceMatchers matches exactly the alert's labels: equality, no regex,
// so the silence covers this alert and nothing broader. Labels with an
// empty value are left out (Alertmanager treats them as "absent").
func SilenceMatchers(labels map[string]string) []SilenceMatcher {
	names := make([]string, 0, len(labels))
	for n, v := range labels {
		if v != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := make([]SilenceMatcher, 0, len(names))
	for _, n := range names {
		out = append(out, SilenceMatcher{Name: n, Value: labels[n], IsRegex: false, IsEqual: true})
	}
	return out
}

func (s Silencer) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return noRedirects
}

// Create posts a silence to the Alertmanager at base and returns its id.
func (s Silencer) Create(ctx context.Context, base string, sil PostableSilence) (string, error) {
	if len(sil.Matchers) == 0 {
		return "", fmt.Errorf("the alert has no labels to silence")
	}
	body, err := json.Marshal(sil)
	if err != nil {
		return "", err
	}
	answer, err := s.do(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/api/v2/silences", body)
	if err != nil {
		return "", err
	}
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.Unmarshal(answer, &out); err != nil || out.SilenceID == "" {
		return "", fmt.Errorf("alertmanager answered without a silenceID: %q", strings.TrimSpace(string(answer)))
	}
	return out.SilenceID, nil
}

// Expire expires silence id at the Alertmanager at base.
func (s Silencer) Expire(ctx context.Context, base, id string) error {
	_, err := s.do(ctx, http.MethodDelete, strings.TrimSuffix(base, "/")+"/api/v2/silence/"+url.PathEscape(id), nil)
	return err
}

// do sends one request to Alertmanager's v2 API and returns the answer's
// body (bounded) when the status is 200.
func (s Silencer) do(ctx context.Context, method, target string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "medic")
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxWebhookResponse))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("alertmanager answered %s: %s", resp.Status, strings.TrimSpace(string(answer)))
	}
	return answer, nil
}

// silenceTimeout bounds one call to Alertmanager.
func silenceTimeout(sb *hcl.Silence) time.Duration {
	if sb.Timeout > 0 {
		return sb.Timeout
	}
	return hcl.DefaultSilenceTimeout
}

// silence silences the alert for the runbook's silence duration before
// the run acts. A failure is a recorded step, never a failed run.
func (r *run) silence() {
	sb := r.rb.Silence
	if sb == nil {
		return
	}
	s := r.step("silence")
	ctx, cancel := context.WithTimeout(r.ctx, silenceTimeout(sb))
	defer cancel()
	now := r.e.opts.Now()
	id, err := r.e.silencer.Create(ctx, sb.Alertmanager, PostableSilence{
		Matchers:  SilenceMatchers(r.req.Alert.Labels),
		StartsAt:  now,
		EndsAt:    now.Add(sb.Duration),
		CreatedBy: "medic",
		Comment:   fmt.Sprintf("medic run %s (runbook %s, agent %s on node %s) is remediating this alert", r.rec.ID, r.rb.Name, r.rec.Agent, r.e.opts.Node),
	})
	if err != nil {
		r.done(s, false, "could not silence the alert in "+sb.Alertmanager+"; humans may be paged", err)
		return
	}
	r.silenceID = id
	r.done(s, true, fmt.Sprintf("silenced in %s as %s until %s", sb.Alertmanager, id, now.Add(sb.Duration).UTC().Format(time.RFC3339)), nil)
}

// keepsSilence: outcomes after which humans were told through an
// escalation keep the silence until its duration ends, so the page does
// not duplicate the escalation; every other end lifts it, so a new
// firing reaches humans as usual.
func keepsSilence(outcome string) bool {
	switch outcome {
	case OutcomeEscalated, OutcomeLimited, OutcomeCircuitOpen:
		return true
	}
	return false
}

// unsilence expires the run's silence unless the outcome keeps it.
func (r *run) unsilence() {
	if r.silenceID == "" || keepsSilence(r.rec.Outcome) {
		return
	}
	sb := r.rb.Silence
	s := r.step("unsilence")
	// The run may have been cancelled; the silence must still go.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), silenceTimeout(sb))
	defer cancel()
	if err := r.e.silencer.Expire(ctx, sb.Alertmanager, r.silenceID); err != nil {
		r.done(s, false, "could not expire silence "+r.silenceID+"; it ends by itself", err)
		return
	}
	r.done(s, true, fmt.Sprintf("expired silence %s (outcome %s)", r.silenceID, r.rec.Outcome), nil)
}
