package bridge

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// Register adds the bridge's endpoints to mux: the webhook, the runs API,
// the fleet view (GET /api/v1/agents),
// the operator's endpoints (pause, approve, reject, reset; with
// Options.Controls), the login form's endpoints and the health, readiness
// and reload endpoints. With a token, everything but /metrics, /-/healthy and
// /-/ready needs it, reads included (see auth.go); the status page is
// mounted by the caller, behind Page.
func (b *Bridge) Register(mux *http.ServeMux) {
	// The webhook is the hot path: it checks the bearer token itself,
	// without allocating, and counts its own answers. It takes the token
	// only, never a browser's session cookie, so no cross-site form can
	// post to it.
	mux.HandleFunc("POST /api/v1/webhook", b.handleWebhook)
	mux.Handle("GET /api/v1/runs", b.Read(http.HandlerFunc(b.handleRuns)))
	mux.Handle("GET /api/v1/runs/{id}", b.Read(http.HandlerFunc(b.handleRun)))
	mux.Handle("GET /api/v1/agents", b.Read(http.HandlerFunc(b.handleAgents)))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("Healthy.\n"))
	})
	mux.HandleFunc("GET /-/ready", b.handleReady)
	mux.Handle("POST /-/reload", b.Write(http.HandlerFunc(b.handleReload)))
	b.registerOperator(mux)
	if b.opts.Token != "" {
		mux.Handle("POST /login", webhookCOP.Handler(http.HandlerFunc(b.handleLogin)))
		mux.Handle("POST /logout", webhookCOP.Handler(http.HandlerFunc(b.handleLogout)))
	}
}

// authorized says whether r carries the bearer token (or none is set).
// The comparison takes the same time for every wrong token of the right
// length, and allocates nothing: it runs on every webhook.
func (b *Bridge) authorized(r *http.Request) bool {
	want := b.opts.Token
	if want == "" {
		return true
	}
	var h string
	if v := r.Header["Authorization"]; len(v) > 0 {
		h = v[0]
	}
	scheme, got, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got = strings.TrimSpace(got)
	if len(got) != len(want) {
		return false
	}
	var diff byte
	for i := 0; i < len(want); i++ {
		diff |= got[i] ^ want[i]
	}
	return subtle.ConstantTimeByteEq(diff, 0) == 1
}

// runFilters are the query parameters of GET /api/v1/runs. Any other is
// refused: a misspelt filter (?agnt=x) would otherwise list every run, and
// a misspelt outcome none, and both look like an answer.
var runFilters = []string{"agent", "node", "runbook", "outcome", "limit"}

// runOutcomes are the values a run's outcome can take: the final ones and
// the state of a run waiting for approval.
var runOutcomes = append(slices.Clip(runbooks.Outcomes), runbooks.OutcomePendingApproval)

// handleRuns is GET /api/v1/runs?agent=&node=&runbook=&outcome=&limit=.
func (b *Bridge) handleRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if !slices.Contains(runFilters, name) {
			writeError(w, http.StatusBadRequest, "unknown parameter "+strconv.Quote(name)+": want "+strings.Join(runFilters, ", "))
			return
		}
	}
	f := jobs.RunFilter{Agent: q.Get("agent"), Node: q.Get("node"), Runbook: q.Get("runbook"), Outcome: q.Get("outcome")}
	if f.Outcome != "" && !slices.Contains(runOutcomes, f.Outcome) {
		writeError(w, http.StatusBadRequest, "outcome: want one of "+strings.Join(runOutcomes, ", "))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > jobs.MaxListLimit {
			writeError(w, http.StatusBadRequest, "limit: want an integer from 1 to "+strconv.Itoa(jobs.MaxListLimit))
			return
		}
		f.Limit = n
	}
	runs, err := b.store.List(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if runs == nil {
		runs = []*runbooks.RunRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": runs})
}

// handleRun is GET /api/v1/runs/{id}.
func (b *Bridge) handleRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, err := b.store.Get(r.Context(), id)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		writeError(w, http.StatusNotFound, "run "+strconv.Quote(id)+" not found")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, http.StatusOK, rec)
	}
}

// readyTimeout bounds GET /-/ready.
const readyTimeout = time.Second

// handleReady is GET /-/ready: ready when Redis answers PING within
// readyTimeout. The client does not apply a context's deadline to a
// connection that is open but silent (it waits for its read or dial
// timeout, 3-5 s), so the PING is waited for here.
func (b *Bridge) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- b.opts.Client.Ping(ctx).Err() }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer to PING within %s", readyTimeout)
	}
	if err != nil {
		http.Error(w, "Not ready: Redis: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("Ready.\n"))
}

// handleReload is POST /-/reload; the caller gets the reload's error.
func (b *Bridge) handleReload(w http.ResponseWriter, r *http.Request) {
	if b.opts.Reload == nil {
		http.Error(w, "reload is not available", http.StatusMethodNotAllowed)
		return
	}
	if err := b.opts.Reload(r.Context()); err != nil {
		http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write([]byte("Reloaded.\n"))
}
