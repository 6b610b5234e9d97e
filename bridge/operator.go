package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/common/model"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/route"
	"github.com/medicops/medic/runbooks"
)

// The operator's endpoints: pause and resume remediation, approve or
// reject a run waiting for approval, reset an agent's circuit breaker.
// Their state is package controls' (Redis, shared by every bridge and
// node); these handlers authenticate, validate, record who acted and log
// it. Each takes JSON, or a form from the status page (answered with a
// redirect back to the page), bounded by maxFormBody.

// maxReasonLen bounds a reason.
const maxReasonLen = 1024

// maxPauseFor bounds a pause's duration ("for").
const maxPauseFor = 366 * 24 * time.Hour

// registerOperator adds the operator endpoints when the bridge has a
// controls store.
func (b *Bridge) registerOperator(mux *http.ServeMux) {
	if b.opts.Controls == nil {
		return
	}
	mux.Handle("GET /api/v1/pause", b.Read(http.HandlerFunc(b.handlePauses)))
	mux.Handle("POST /api/v1/pause", b.Write(http.HandlerFunc(b.handlePause)))
	mux.Handle("DELETE /api/v1/pause", b.Write(http.HandlerFunc(b.handleResume)))
	// The form-friendly DELETE: HTML forms can only GET and POST.
	mux.Handle("POST /api/v1/resume", b.Write(http.HandlerFunc(b.handleResume)))
	mux.Handle("POST /api/v1/runs/{id}/approve", b.Write(b.handleDecide(true)))
	mux.Handle("POST /api/v1/runs/{id}/reject", b.Write(b.handleDecide(false)))
	mux.Handle("POST /api/v1/agents/{node}/{agent}/reset", b.Write(http.HandlerFunc(b.handleReset)))
}

// opError is an operator request's failure: its status and message, and
// for a conflict what stands in the way.
type opError struct {
	code int
	msg  string
}

func (e *opError) Error() string { return e.msg }

func opErr(code int, format string, args ...any) *opError {
	return &opError{code, fmt.Sprintf(format, args...)}
}

// readInput decodes an operator request's body into v: a form (already
// parsed by Write) through form, else JSON (an empty body is an empty
// object). Unknown JSON fields are refused: this is an API people type at,
// and a misspelt "reason" or "for" should not be dropped silently.
func readInput(w http.ResponseWriter, r *http.Request, v any, form func(get func(string) string)) *opError {
	if isForm(r) {
		form(r.PostForm.Get)
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return opErr(http.StatusRequestEntityTooLarge, "body: over the limit of %d bytes", mbe.Limit)
		}
		return opErr(http.StatusBadRequest, "body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return opErr(http.StatusBadRequest, "body: %v", err)
	}
	if dec.More() {
		return opErr(http.StatusBadRequest, "body: more than one JSON value")
	}
	return nil
}

// answer writes an operator endpoint's result: for a form, a redirect to
// the status page (or the error as text); for JSON, v or the error.
func answer(w http.ResponseWriter, r *http.Request, code int, v any, err *opError) {
	if isForm(r) {
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(err.code)
			fmt.Fprintf(w, "medic: %s\n\nBack to the status page: /\n", err.msg)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err != nil {
		writeError(w, err.code, err.msg)
		return
	}
	writeJSON(w, code, v)
}

// checkReason trims a reason and refuses control characters (but tabs
// and newlines) and overlong text.
func checkReason(s string) (string, *opError) {
	s = strings.TrimSpace(s)
	if len(s) > maxReasonLen {
		return "", opErr(http.StatusBadRequest, "reason: at most %d bytes", maxReasonLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return "", opErr(http.StatusBadRequest, "reason: no control characters")
		}
	}
	return s, nil
}

func checkBy(s string) (string, *opError) {
	s, err := checkName(s)
	if err != nil {
		return "", opErr(http.StatusBadRequest, "by: %v", err)
	}
	return s, nil
}

// knownRunbook refuses a runbook the configuration does not define, so
// that a misspelt name pauses (or resumes) nothing unnoticed.
func (b *Bridge) knownRunbook(name string) *opError {
	cfg := b.opts.Config()
	if cfg == nil {
		return opErr(http.StatusServiceUnavailable, "no configuration loaded")
	}
	var names []string
	for _, rb := range cfg.Runbooks {
		if rb.Name == name {
			return nil
		}
		names = append(names, rb.Name)
	}
	slices.Sort(names)
	if len(names) > 20 {
		names = append(names[:20], "…")
	}
	return opErr(http.StatusBadRequest, "runbook %q is not configured; configured: %s", name, strings.Join(names, ", "))
}

// PauseRequest is the body of POST /api/v1/pause.
type PauseRequest struct {
	// Runbook to pause; "" or "*": every runbook.
	Runbook string `json:"runbook"`
	// For is how long, as a Prometheus or Go duration ("90m", "1h30m",
	// "2d"); "": until resumed.
	For    string `json:"for"`
	Reason string `json:"reason"`
	// By names who pauses, when the request is not authenticated as a
	// user.
	By string `json:"by"`
}

// pausesAnswer is GET /api/v1/pause, and what DELETE leaves.
type pausesAnswer struct {
	Pauses []controls.Pause `json:"pauses"`
}

// handlePauses is GET /api/v1/pause: the active pauses, the global one
// (runbook "") first.
func (b *Bridge) handlePauses(w http.ResponseWriter, r *http.Request) {
	ps, err := b.opts.Controls.Pauses(r.Context(), b.opts.Now())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "read pauses: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, pausesAnswer{Pauses: ps})
}

// parseFor reads a pause's duration: Prometheus' format (which has d, w,
// y) or Go's (which has fractions and "1h30m" too).
func parseFor(s string) (time.Duration, error) {
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return time.ParseDuration(s)
}

// handlePause is POST /api/v1/pause.
func (b *Bridge) handlePause(w http.ResponseWriter, r *http.Request) {
	var in PauseRequest
	if err := readInput(w, r, &in, func(get func(string) string) {
		in = PauseRequest{Runbook: get("runbook"), For: get("for"), Reason: get("reason"), By: get("by")}
	}); err != nil {
		answer(w, r, 0, nil, err)
		return
	}
	p, err := b.pauseFrom(in, CallerFrom(r.Context()))
	if err != nil {
		answer(w, r, 0, nil, err)
		return
	}
	if err := b.opts.Controls.Pause(r.Context(), p); err != nil {
		answer(w, r, 0, nil, opErr(http.StatusServiceUnavailable, "store pause: %v", err))
		return
	}
	b.log.Warn("remediation paused", "runbook", pauseName(p.Runbook), "until", untilText(p.Until), "by", p.By, "reason", p.Reason)
	answer(w, r, http.StatusOK, p, nil)
}

func (b *Bridge) pauseFrom(in PauseRequest, c *Caller) (controls.Pause, *opError) {
	var p controls.Pause
	p.Runbook = strings.TrimSpace(in.Runbook)
	if p.Runbook == controls.AllRunbooks {
		p.Runbook = ""
	}
	if p.Runbook != "" {
		if err := b.knownRunbook(p.Runbook); err != nil {
			return p, err
		}
	}
	p.Since = b.opts.Now()
	if s := strings.TrimSpace(in.For); s != "" {
		d, err := parseFor(s)
		switch {
		case err != nil:
			return p, opErr(http.StatusBadRequest, "for: %q is not a duration (e.g. 90m, 1h30m, 2d)", s)
		case d <= 0 || d > maxPauseFor:
			return p, opErr(http.StatusBadRequest, "for: want a positive duration of at most %s, not %s", model.Duration(maxPauseFor), s)
		}
		p.Until = p.Since.Add(d)
	}
	var oe *opError
	if p.Reason, oe = checkReason(in.Reason); oe != nil {
		return p, oe
	}
	by, oe := checkBy(in.By)
	if oe != nil {
		return p, oe
	}
	p.By = c.Who(by)
	return p, nil
}

// handleResume is DELETE /api/v1/pause?runbook=R and its form twin POST
// /api/v1/resume (runbook in the form or JSON body). Without a runbook it
// lifts the global pause only; per-runbook pauses stay.
func (b *Bridge) handleResume(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Runbook string `json:"runbook"`
		By      string `json:"by"`
	}
	if err := readInput(w, r, &in, func(get func(string) string) { in.Runbook, in.By = get("runbook"), get("by") }); err != nil {
		answer(w, r, 0, nil, err)
		return
	}
	for name := range r.URL.Query() {
		if name != "runbook" {
			answer(w, r, 0, nil, opErr(http.StatusBadRequest, "unknown parameter %q: want runbook", name))
			return
		}
	}
	if q := r.URL.Query().Get("runbook"); q != "" {
		in.Runbook = q
	}
	rb := strings.TrimSpace(in.Runbook)
	if rb == controls.AllRunbooks {
		rb = ""
	}
	by, oe := checkBy(in.By)
	if oe != nil {
		answer(w, r, 0, nil, oe)
		return
	}
	ok, err := b.opts.Controls.Resume(r.Context(), rb)
	if err != nil {
		answer(w, r, 0, nil, opErr(http.StatusServiceUnavailable, "resume: %v", err))
		return
	}
	if !ok && isForm(r) {
		// Not an error to a form: the page may just be stale.
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	left, err := b.opts.Controls.Pauses(r.Context(), b.opts.Now())
	if err != nil {
		left = nil // the resume itself went through; the listing is a courtesy
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{
			"error": pauseName(rb) + " is not paused", "pauses": nonNil(left),
		})
		return
	}
	b.log.Warn("remediation resumed", "runbook", pauseName(rb), "by", CallerFrom(r.Context()).Who(by), "still_paused", len(left))
	answer(w, r, http.StatusOK, map[string]any{"resumed": pauseLabel(rb), "pauses": nonNil(left)}, nil)
}

func nonNil(ps []controls.Pause) []controls.Pause {
	if ps == nil {
		return []controls.Pause{}
	}
	return ps
}

// pauseName is how a pause is named in messages.
func pauseName(runbook string) string {
	if runbook == "" {
		return "the global pause (every runbook)"
	}
	return "runbook " + strconv.Quote(runbook)
}

// pauseLabel is a pause's runbook as the API and medic_paused name it.
func pauseLabel(runbook string) string {
	if runbook == "" {
		return controls.AllRunbooks
	}
	return runbook
}

func untilText(t time.Time) string {
	if t.IsZero() {
		return "resumed"
	}
	return t.UTC().Format(time.RFC3339)
}

// DecisionRequest is the optional body of POST /api/v1/runs/{id}/approve
// and /reject.
type DecisionRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// readDecision reads and checks the {by, reason} body (JSON or form) of
// approve, reject and reset; false means the answer has been written.
func readDecision(w http.ResponseWriter, r *http.Request) (by, reason string, ok bool) {
	var in DecisionRequest
	if err := readInput(w, r, &in, func(get func(string) string) { in = DecisionRequest{By: get("by"), Reason: get("reason")} }); err != nil {
		answer(w, r, 0, nil, err)
		return "", "", false
	}
	by, oe := checkBy(in.By)
	if oe == nil {
		reason, oe = checkReason(in.Reason)
	}
	if oe != nil {
		answer(w, r, 0, nil, oe)
		return "", "", false
	}
	return by, reason, true
}

// validRunID bounds what a run id can be before it becomes part of a key.
func validRunID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c == '-' || c == '_' || c == '.' || c == ':' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// handleDecide is POST /api/v1/runs/{id}/approve (approve) or /reject.
func (b *Bridge) handleDecide(approve bool) http.Handler {
	verb := decisionVerb(approve)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		by, reason, ok := readDecision(w, r)
		if !ok {
			return
		}
		if !validRunID(id) {
			answer(w, r, 0, nil, opErr(http.StatusNotFound, "run %q is not waiting for approval", id))
			return
		}
		if b.answerTerminal(w, r, id) {
			return
		}
		d := controls.Decision{RunID: id, Approve: approve, By: CallerFrom(r.Context()).Who(by), Reason: reason, At: b.opts.Now()}
		err := b.opts.Controls.Decide(r.Context(), d)
		switch {
		case errors.Is(err, controls.ErrNotPending):
			answer(w, r, 0, nil, opErr(http.StatusNotFound, "run %q is not waiting for approval (unknown, not in approve mode, or its approval_ttl passed)", id))
			return
		case errors.Is(err, controls.ErrDecided):
			msg := fmt.Sprintf("run %q was already decided; the first decision stands", id)
			if prev, err := b.opts.Controls.Decision(r.Context(), id); err == nil && prev != nil {
				msg = fmt.Sprintf("run %q was already %s by %s at %s; the first decision stands", id, decisionVerb(prev.Approve), prev.By, prev.At.UTC().Format(time.RFC3339))
				if !isForm(r) {
					writeJSON(w, http.StatusConflict, map[string]any{"error": msg, "decision": prev})
					return
				}
			}
			answer(w, r, 0, nil, opErr(http.StatusConflict, "%s", msg))
			return
		case err != nil:
			answer(w, r, 0, nil, opErr(http.StatusServiceUnavailable, "decide: %v", err))
			return
		}
		b.log.Warn("run "+verb, "run", id, "by", d.By, "reason", d.Reason)
		answer(w, r, http.StatusOK, d, nil)
	})
}

// answerTerminal answers 409, naming its outcome, when run id has already
// ended: deciding it could act on nothing, and an operator told 200 would
// believe a restart is coming. A run whose record is still pending (or
// that has none yet) is left to Decide.
func (b *Bridge) answerTerminal(w http.ResponseWriter, r *http.Request, id string) bool {
	rec, err := b.store.Get(r.Context(), id)
	if err != nil || rec.Outcome == "" || rec.Outcome == runbooks.OutcomePendingApproval || rec.HeldBy != "" {
		return false
	}
	msg := fmt.Sprintf("run %q has already ended: %s", id, rec.Outcome)
	if rec.Reason != "" {
		msg += " (" + rec.Reason + ")"
	}
	if !isForm(r) {
		writeJSON(w, http.StatusConflict, map[string]any{"error": msg, "outcome": rec.Outcome})
		return true
	}
	answer(w, r, 0, nil, opErr(http.StatusConflict, "%s", msg))
	return true
}

func decisionVerb(approve bool) string {
	if approve {
		return "approved"
	}
	return "rejected"
}

// handleReset is POST /api/v1/agents/{node}/{agent}/reset: the agent's
// circuit breaker closes and its crash-loop backoff ends, so its next run
// acts at once (the restart budget's history stays).
func (b *Bridge) handleReset(w http.ResponseWriter, r *http.Request) {
	node, agent := r.PathValue("node"), r.PathValue("agent")
	by, reason, ok := readDecision(w, r)
	if !ok {
		return
	}
	cfg := b.opts.Config()
	if cfg == nil {
		answer(w, r, 0, nil, opErr(http.StatusServiceUnavailable, "no configuration loaded"))
		return
	}
	a := cfg.Agent(agent)
	switch {
	case !route.ValidNode(node):
		answer(w, r, 0, nil, opErr(http.StatusNotFound, "node name %q is not usable", node))
		return
	case a == nil:
		answer(w, r, 0, nil, opErr(http.StatusNotFound, "agent %q is not configured", agent))
		return
	case a.Node != "" && a.Node != node:
		answer(w, r, 0, nil, opErr(http.StatusNotFound, "agent %q runs on node %q, not %q", agent, a.Node, node))
		return
	}
	if err := b.opts.Controls.ResetAgent(r.Context(), node, agent); err != nil {
		answer(w, r, 0, nil, opErr(http.StatusServiceUnavailable, "reset: %v", err))
		return
	}
	who := CallerFrom(r.Context()).Who(by)
	b.log.Warn("agent reset: circuit closed, backoff ended", "node", node, "agent", agent, "by", who, "reason", reason)
	answer(w, r, http.StatusOK, map[string]any{"node": node, "agent": agent, "reset": true, "by": who}, nil)
}
