package simulate

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
)

func TestEpisodesSplitAtGaps(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	eps := Episodes([]Series{
		{Labels: map[string]string{"agent": "b"}, Times: []time.Time{m(0), m(1), m(2), m(10), m(11)}},
		{Labels: map[string]string{"agent": "a"}, Times: []time.Time{m(0), m(5)}},
	}, time.Minute)
	var got []string
	for _, e := range eps {
		got = append(got, fmt.Sprintf("%s %d-%d", e.Labels["agent"], int(e.Start.Sub(t0).Minutes()), int(e.End.Sub(t0).Minutes())))
	}
	if want := "a 0-0,b 0-2,a 5-5,b 10-11"; strings.Join(got, ",") != want {
		t.Errorf("episodes %v, want %s", got, want)
	}
}

// A fake query_range API that refuses ranges of more than maxPts points
// the way Prometheus does, and answers one series with a point a step.
func fakeProm(t *testing.T, maxPts int, calls *int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls++
		_ = r.ParseForm()
		if r.URL.Path != "/api/v1/query_range" || r.Form.Get("query") != HistoryQuery {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"unexpected query"}`)
			return
		}
		start, _ := strconv.ParseInt(r.Form.Get("start"), 10, 64)
		end, _ := strconv.ParseInt(r.Form.Get("end"), 10, 64)
		step, _ := strconv.ParseFloat(r.Form.Get("step"), 64)
		n := int(float64(end-start)/step) + 1
		if n > maxPts {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}`)
			return
		}
		var vals []string
		for ts := start; ts <= end; ts += int64(step) {
			vals = append(vals, fmt.Sprintf(`[%d,"1"]`, ts))
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"ALERTS","alertstate":"firing","alertname":"A","agent":"x"},"values":[%s]}]}}`, strings.Join(vals, ","))
	}))
}

// A range Prometheus finds too large is split until it answers, and the
// pieces join into one continuous series: one episode.
func TestHistorySplitsTooManyPoints(t *testing.T) {
	calls := 0
	srv := fakeProm(t, 100, &calls)
	defer srv.Close()
	from := time.Unix(1_900_000_000, 0).UTC()
	to := from.Add(299 * time.Minute)
	series, err := (&Prometheus{URL: srv.URL}).History(context.Background(), from, to, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 || len(series[0].Times) != 300 || series[0].Labels["alertstate"] != "" || series[0].Labels["alertname"] != "A" {
		t.Fatalf("series %d, points %d, labels %v", len(series), len(series[0].Times), series[0].Labels)
	}
	if calls < 4 {
		t.Errorf("%d calls: the range was not split", calls)
	}
	if eps := Episodes(series, time.Minute); len(eps) != 1 || !eps[0].Start.Equal(from) || !eps[0].End.Equal(to) {
		t.Errorf("episodes %+v", eps)
	}
}

func TestHistoryErrorsAreClear(t *testing.T) {
	ctx := context.Background()
	from := time.Unix(1_900_000_000, 0)
	to := from.Add(time.Hour)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	_, err = (&Prometheus{URL: dead}).History(ctx, from, to, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "Prometheus at "+dead+" is unreachable") {
		t.Errorf("unreachable: %v", err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bad/api/v1/query_range":
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}`)
		case "/html/api/v1/query_range":
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, "404 page not found\n")
		default:
			fmt.Fprint(w, "<html>hello</html>")
		}
	}))
	defer srv.Close()
	for path, want := range map[string]string{
		"/bad":  "Prometheus refused the query (422 Unprocessable Entity): execution: query timed out in expression evaluation",
		"/html": "Prometheus refused the query (404 Not Found): 404 page not found",
		"/":     "is not the query API's JSON (is it Prometheus?)",
	} {
		_, err := (&Prometheus{URL: srv.URL + path}).History(ctx, from, to, time.Minute)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
	// Still too many points for a single step: the error says so.
	calls := 0
	tiny := fakeProm(t, 0, &calls)
	defer tiny.Close()
	_, err = (&Prometheus{URL: tiny.URL}).History(ctx, from, to, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exceeded maximum resolution") || !strings.Contains(err.Error(), "is too much") {
		t.Errorf("too many points at every size: %v", err)
	}
}

// The backtest's counts come from the engine's own controls: a circuit
// of 2 runs an hour, a shadow runbook, an approve runbook, the default
// budget of 3 restarts an hour, and the concurrency limit with
// overlapping runs.
func TestBacktestCounts(t *testing.T) {
	cfg, diags := hcl.LoadPaths("testdata/safety/estate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ep := func(alertname, agent string, min int) Episode {
		return Episode{Labels: map[string]string{"alertname": alertname, "agent": agent}, Start: t0.Add(time.Duration(min) * time.Minute)}
	}
	eps := []Episode{
		ep("Guarded", "web-1", 0), ep("Guarded", "web-1", 20), ep("Guarded", "web-1", 40),
		ep("Serial", "web-1", 200), ep("Serial", "web-2", 200), ep("Serial", "web-3", 201),
		ep("Careful", "web-2", 300), ep("Asks", "web-3", 400),
		ep("Nothing", "web-3", 500), ep("Guarded", "nobody", 600),
		ep("Quiet", "web-3", 700), ep("Quiet", "web-3", 705), ep("Quiet", "web-3", 710), ep("Quiet", "web-3", 715),
	}
	rep, err := Backtest(context.Background(), cfg, eps, t0, t0.Add(24*time.Hour), 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]RunbookSummary{}
	for _, s := range rep.Runbooks {
		got[s.Runbook] = s
	}
	for name, want := range map[string]RunbookSummary{
		"guarded":       {Runbook: "guarded", Runs: 3, Agents: 1, PeakConcurrency: 1, Outcomes: BacktestOutcome{WouldAct: 2, CircuitOpen: 1}},
		"one-at-a-time": {Runbook: "one-at-a-time", Runs: 3, Agents: 2, PeakConcurrency: 1, Outcomes: BacktestOutcome{WouldAct: 2, Limited: 1}},
		"careful":       {Runbook: "careful", Runs: 1, Outcomes: BacktestOutcome{Shadowed: 1}},
		"asks":          {Runbook: "asks", Runs: 1, Outcomes: BacktestOutcome{PendingApproval: 1}},
		"quiet":         {Runbook: "quiet", Runs: 4, Agents: 1, PeakConcurrency: 1, Outcomes: BacktestOutcome{WouldAct: 3, BudgetExhausted: 1}},
	} {
		if got[name] != want {
			t.Errorf("%s: %+v, want %+v", name, got[name], want)
		}
	}
	if rep.Episodes != 14 || rep.Unmatched != 1 || rep.Unroutable != 1 {
		t.Errorf("episodes %d unmatched %d unroutable %d", rep.Episodes, rep.Unmatched, rep.Unroutable)
	}
}
