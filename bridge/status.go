package bridge

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// The status page is server-rendered from one embedded template: no
// front-end build, no JavaScript, readable in a text browser, refreshed
// by a meta tag.

//go:embed templates/*.html
var statusFS embed.FS

var loginTmpl = template.Must(template.ParseFS(statusFS, "templates/login.html"))

// writeLoginPage answers with the login form and msg above it.
func writeLoginPage(w http.ResponseWriter, code int, msg string) {
	var buf bytes.Buffer
	if err := loginTmpl.Execute(&buf, msg); err != nil {
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	pageHeaders(w)
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// pageHeaders are the headers of every HTML page the bridge serves.
func pageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The pages show operational data; they never need to be framed.
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
}

var statusTmpl = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"since": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return ago(now.Sub(t)) + " ago"
	},
	"secs": func(f float64) string {
		return roundDuration(time.Duration(f * float64(time.Second)))
	},
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("15:04:05Z")
	},
	"deref":      func(p *int) int { return *p },
	"deref_bool": func(p *bool) bool { return *p },
	"deref64":    func(p *int64) int64 { return *p },
	"usages":     func(a agentView) []usageView { return []usageView{a.Memory, a.CPU, a.Disk} },
	"pct":        percent,
	"trunc":      truncate,
	"shortid":    shortID,
	"outcome":    outcomeClass,
	"outcomeHelp": func(o string) string {
		return outcomeHelp[o]
	},
	"lines": func(s string) int {
		return strings.Count(strings.TrimRight(s, "\n"), "\n") + 1
	},
	"plural": func(n int, word string) string {
		if n == 1 {
			return "1 " + word
		}
		return strconv.Itoa(n) + " " + word + "s"
	},
	"join": strings.Join,
	// stepBadge: see status_truth.go.
	"stepBadge": stepBadge,
	"until": func(now, t time.Time) string {
		if t.IsZero() {
			return "until resumed"
		}
		return "until " + t.UTC().Format("2006-01-02 15:04:05Z") + " (in " + ago(t.Sub(now)) + ")"
	},
	"pauseLabel": pauseLabel,
}).ParseFS(statusFS, "templates/status.html", "templates/fleet.html"))

func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// RunLister is what the status page needs from the run store
// (*jobs.RunStore implements it).
type RunLister interface {
	List(ctx context.Context, f jobs.RunFilter) ([]*runbooks.RunRecord, error)
}

var _ RunLister = (*jobs.RunStore)(nil)

// RunGetter reads one run record; a Runs source that has it (*jobs.RunStore
// does) lets the page show runs waiting for approval that are older than
// the recent ones.
type RunGetter interface {
	Get(ctx context.Context, id string) (*runbooks.RunRecord, error)
}

var _ RunGetter = (*jobs.RunStore)(nil)

// PoolStatus is one pool as the status page shows it; the caller fills it
// from the queue package's status (queue.ReadStatus).
type PoolStatus struct {
	Pool        string
	Agent       string // the active agent
	Status      string // active, switching, waiting, ""
	Lock        bool
	Epoch       int64
	Backlog     int64
	Buffer      int64
	Switchovers int64
	Agents      []PoolAgent
	Error       string // reading this pool failed
	// Blocked lists the first blocked devices (status_dispatch.go) of
	// BlockedTotal.
	Blocked      []BlockedDevice
	BlockedTotal int64
}

// PoolAgent is one registered agent of a pool.
type PoolAgent struct {
	ID           string
	Healthy      bool
	HeartbeatAge float64 // seconds
}

// StatusOptions configure NewStatusPage. Every source is optional; a
// missing one leaves its section empty, a failing one shows its error in
// the section, and the page is still served.
type StatusOptions struct {
	// Runs lists recent run records.
	Runs RunLister
	// Redis holds the node snapshots: SMEMBERS PREFIXnodes and
	// GET PREFIXnode:NAME:state (JSON written by each medic node).
	Redis redis.UniversalClient
	Keys  jobs.Keys
	// Fleet reads the snapshots for the agents section (fleet.go); nil
	// with Redis set means a fleet view of its own on Redis.
	Fleet *Fleet
	// Pools returns the pools' status.
	Pools func(ctx context.Context) ([]PoolStatus, error)
	// Controls, when set, shows the active pauses with a resume button
	// each, and the runs waiting for approval with approve and reject
	// buttons (posting to the operator endpoints).
	Controls *controls.Store
	// Runbooks names the configured runbooks for the page's pause form
	// (it follows reloads); nil: the form offers "every runbook" only.
	Runbooks func() []string
	// Plan, when set, says what approving a pending run will do (see
	// PlannedSteps); the page lists it under the run.
	Plan func(rec *runbooks.RunRecord) []string
	// RunLimit is how many recent runs are shown (default 25).
	RunLimit int
	// Refresh is the meta refresh period (default 5s; negative disables).
	Refresh time.Duration
	// Timeout bounds gathering the data (default 3s).
	Timeout time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// StatusPagePattern is the ServeMux pattern to mount the status page at:
// GET (and so HEAD) of exactly "/".
//
//	mux.Handle(bridge.StatusPagePattern, bridge.NewStatusPage(opts))
//
// Mounted at the catch-all "/" instead, the page would also receive every
// request whose method no other pattern allows (GET /api/v1/webhook,
// DELETE /api/v1/runs) and answer 404; with this pattern the mux answers
// those 405 Method Not Allowed with an Allow header, and unknown paths 404.
const StatusPagePattern = "GET /{$}"

// NewStatusPage returns the handler of GET / on the bridge; mount it at
// StatusPagePattern. It answers 404 itself for any path other than "/" and
// 405 for methods other than GET and HEAD, wherever it is mounted.
func NewStatusPage(o StatusOptions) http.Handler {
	if o.RunLimit <= 0 {
		o.RunLimit = 25
	}
	if o.Refresh == 0 {
		o.Refresh = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Fleet == nil && o.Redis != nil {
		o.Fleet = NewFleet(FleetOptions{Redis: o.Redis, Keys: o.Keys, Now: o.Now})
	}
	return &statusPage{o: o}
}

type statusPage struct{ o StatusOptions }

// statusData is what the template renders.
type statusData struct {
	Now        time.Time
	Refresh    int // seconds; 0: no refresh
	Fleet      *fleetView
	NodesError string
	Runs       []*runbooks.RunRecord
	RunsError  string
	Pools      []PoolStatus
	PoolsError string
	// Caller is who looks at the page (nil: the page is not behind
	// Bridge.Page); a session gets a sign-out button and its CSRF token
	// in every form.
	Caller *Caller
	CSRF   string
	// Controls: the operator's forms are offered.
	Controls      bool
	Runbooks      []string
	Pauses        []controls.Pause
	Pending       []*runbooks.RunRecord // waiting for approval, oldest deadline first
	ControlsError string
	plan          func(*runbooks.RunRecord) []string // PlanFor; see status_truth.go
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.o.Timeout)
	defer cancel()
	d := statusData{Now: p.o.Now(), Caller: CallerFrom(r.Context()), plan: p.o.Plan}
	if p.o.Refresh > 0 && r.URL.Query().Get("refresh") != "0" {
		d.Refresh = max(1, int(p.o.Refresh/time.Second))
	}
	if p.o.Fleet != nil {
		d.Fleet, d.NodesError = p.readFleet(ctx, r.URL.Query(), d.Now)
	}
	if p.o.Runs != nil {
		runs, err := p.o.Runs.List(ctx, jobs.RunFilter{Limit: p.o.RunLimit})
		d.Runs = runs
		if err != nil {
			d.RunsError = err.Error()
		}
	}
	if p.o.Controls != nil {
		d.Controls = true
		if p.o.Runbooks != nil {
			d.Runbooks = slices.Sorted(slices.Values(p.o.Runbooks()))
		}
		p.readControls(ctx, &d)
	}
	if p.o.Pools != nil {
		pools, err := p.o.Pools(ctx)
		sort.Slice(pools, func(i, j int) bool { return pools[i].Pool < pools[j].Pool })
		d.Pools = pools
		if err != nil {
			d.PoolsError = err.Error()
		}
	}
	if d.Caller != nil {
		d.CSRF = d.Caller.CSRF
	}
	for _, e := range []string{d.NodesError, d.RunsError, d.PoolsError, d.ControlsError} {
		if e != "" {
			p.o.Logger.Warn("status page: a source failed", "err", e)
		}
	}
	var buf bytes.Buffer
	if err := statusTmpl.Execute(&buf, d); err != nil {
		p.o.Logger.Error("status page: render", "err", err)
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	pageHeaders(w)
	_, _ = w.Write(buf.Bytes())
}

// maxPendingShown bounds the runs waiting for approval the page reads.
const maxPendingShown = 50

// readControls reads the pauses and the runs waiting for approval: their
// records from the recent runs, or one by one when older.
func (p *statusPage) readControls(ctx context.Context, d *statusData) {
	var errs []string
	pauses, err := p.o.Controls.Pauses(ctx, d.Now)
	if err != nil {
		errs = append(errs, "read pauses: "+err.Error())
	}
	d.Pauses = pauses
	ids, err := p.o.Controls.Pending(ctx, d.Now)
	if err != nil {
		errs = append(errs, "read approvals: "+err.Error())
	}
	recent := map[string]*runbooks.RunRecord{}
	for _, r := range d.Runs {
		recent[r.ID] = r
	}
	getter, _ := p.o.Runs.(RunGetter)
	for _, id := range ids[:min(len(ids), maxPendingShown)] {
		rec := recent[id]
		if rec == nil && getter != nil {
			rec, err = getter.Get(ctx, id)
			if err != nil && !errors.Is(err, jobs.ErrNotFound) {
				errs = append(errs, "read run "+id+": "+err.Error())
			}
		}
		if rec == nil {
			// Its record is not stored (yet): the id alone is enough to decide.
			rec = &runbooks.RunRecord{ID: id, Outcome: runbooks.OutcomePendingApproval}
		}
		d.Pending = append(d.Pending, rec)
	}
	d.ControlsError = strings.Join(errs, "; ")
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// humanBytes formats a byte count in binary units: "512 B", "8.1 MiB", "25 MiB".
func humanBytes(f float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	switch {
	case i == 0:
		return strconv.FormatFloat(f, 'f', 0, 64) + " B"
	case f < 10:
		return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
	default:
		return strconv.FormatFloat(f, 'f', 0, 64) + " " + units[i]
	}
}

// percent formats a ratio: "0%", "<0.1%", "0.5%", "20%", "99.5%" (a
// decimal near 100%, where thresholds sit).
func percent(r float64) string {
	p := r * 100
	switch {
	case p == 0:
		return "0%"
	case p < 0.1:
		return "<0.1%"
	case p < 10, p >= 99 && p < 100:
		return strings.TrimSuffix(strconv.FormatFloat(p, 'f', 1, 64), ".0") + "%"
	default:
		return strconv.FormatFloat(p, 'f', 0, 64) + "%"
	}
}

// ago formats an age for a human scanning a page: "612ms", "8.6s",
// "4m12s", "3h04m", "2d3h".
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return roundDuration(d)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

// shortID is the part of a run id a human tells runs apart by: the random
// suffix of "20261122T010839545-55b27e0471"; the page keeps the full id
// in a title and in data-run.
func shortID(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 && len(id)-i-1 >= 6 {
		return id[i+1:]
	}
	if len(id) <= 16 {
		return id
	}
	return "…" + id[len(id)-12:]
}

// outcomeClass is the CSS class of a run outcome: ok (it worked), warn
// (nothing done, for a reason worth a look), held (nothing done because
// an operator or the runbook's mode said so), pending (waiting for an
// operator) and bad (broken, or medic could not help).
func outcomeClass(o string) string {
	switch o {
	case runbooks.OutcomeRecovered, runbooks.OutcomeHealthy, runbooks.OutcomeSwitched:
		return "ok"
	case runbooks.OutcomeSkipped, runbooks.OutcomeCancelled, runbooks.OutcomeExpired, runbooks.OutcomeLimited, runbooks.OutcomeRejected:
		return "warn"
	case runbooks.OutcomePaused, runbooks.OutcomeShadowed:
		return "held"
	case runbooks.OutcomePendingApproval:
		return "pending"
	}
	return "bad"
}

// outcomeHelp is the page's tooltip on an outcome.
var outcomeHelp = map[string]string{
	runbooks.OutcomeHealthy:         "alive and its probe passes: nothing was touched",
	runbooks.OutcomeRecovered:       "verified healthy after the repair and restart",
	runbooks.OutcomeEscalated:       "still broken, or not allowed to restart: humans were told",
	runbooks.OutcomeSwitched:        "the pool switched to another agent",
	runbooks.OutcomeUnroutable:      "no node could be found for the alert",
	runbooks.OutcomeExpired:         "the job reached its node past its deadline, or its approval was not given in time",
	runbooks.OutcomeCancelled:       "the alert resolved before the job started",
	runbooks.OutcomeSkipped:         "another run holds the agent, or the agent is not on this node",
	runbooks.OutcomeFailed:          "medic itself failed",
	runbooks.OutcomeLimited:         "the runbook's fleet-wide concurrency limit held it past its wait or queue: escalated",
	runbooks.OutcomeCircuitOpen:     "the agent's circuit breaker is open: too many runs lately, escalated without acting (reset: POST /api/v1/agents/NODE/AGENT/reset)",
	runbooks.OutcomeShadowed:        "shadow mode: what would have been done was recorded, nothing was done",
	runbooks.OutcomePaused:          "remediation is paused by an operator: nothing was done",
	runbooks.OutcomeRejected:        "an operator rejected the run: nothing was done",
	runbooks.OutcomePendingApproval: "waiting for an operator to approve or reject it",
}
