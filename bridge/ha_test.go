package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// episodeCounter is a Runner that counts runs per alert episode.
type episodeCounter struct {
	mu   sync.Mutex
	runs map[string]int // fingerprint:startsAt → runs
}

func (e *episodeCounter) Run(_ context.Context, req runbooks.Request) *runbooks.RunRecord {
	e.mu.Lock()
	if e.runs == nil {
		e.runs = map[string]int{}
	}
	e.runs[req.Alert.Fingerprint+":"+strconv.FormatInt(req.Alert.StartsAt.UnixMilli(), 10)]++
	e.mu.Unlock()
	now := time.Now()
	return &runbooks.RunRecord{ID: req.ID, Runbook: req.Runbook, Agent: req.Agent, Fingerprint: req.Alert.Fingerprint,
		StartsAt: req.Alert.StartsAt, Steps: []runbooks.Step{}, Outcome: runbooks.OutcomeHealthy, Started: now, Finished: now}
}

func (e *episodeCounter) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.runs))
	for k, v := range e.runs {
		out[k] = v
	}
	return out
}

// checkOnce waits until want episodes ran, gives a late duplicate time to
// show up, and fails for any episode that ran more than once.
func checkOnce(t *testing.T, ec *episodeCounter, want int, timeout time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d episodes to run", want), timeout, func() bool { return len(ec.snapshot()) >= want })
	time.Sleep(time.Second)
	got := ec.snapshot()
	if len(got) != want {
		t.Errorf("%d episodes ran, want %d", len(got), want)
	}
	for ep, n := range got {
		if n != 1 {
			t.Errorf("episode %s ran %d times, want once", ep, n)
		}
	}
}

func TestHATwoAlertmanagersTwoBridges(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{AOF: true})
	cfg := loadTestConfig(t, testHCL)
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg, runbooks.NewMetrics(reg))
	var urls []string
	for range 2 {
		b := New(Options{Client: rs.Client(), Config: func() *hcl.Config { return cfg }, Token: testToken, Metrics: metrics})
		mux := http.NewServeMux()
		b.Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL+"/api/v1/webhook")
	}
	ec := &episodeCounter{}
	startConsumer(t, jobs.ConsumerOptions{Client: rs.Client(), Node: "n1", Runner: ec, Store: jobs.NewRunStore(rs.Client(), jobs.StoreOptions{}),
		Block: 200 * time.Millisecond, Concurrency: 8})

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A short peer timeout makes the second Alertmanager notify too before
	// the first one's notification log reaches it: real HA duplicates.
	ams := harness.StartAlertmanagers(t, 2, harness.AlertmanagerOptions{WebhookURLs: urls, TokenFile: tokenFile, PeerTimeout: 10 * time.Millisecond})

	const n = 100
	startsAt := time.Now().UTC().Truncate(time.Second)
	var alerts []map[string]any
	for i := range n {
		alerts = append(alerts, map[string]any{
			"labels":   map[string]string{"alertname": "AgentDown", "agent": "a1", "node": "n1", "instance": fmt.Sprintf("i%03d", i)},
			"startsAt": startsAt.Format(time.RFC3339),
		})
	}
	body, _ := json.Marshal(alerts)
	// Prometheus sends every alert to every Alertmanager.
	for _, am := range ams {
		if err := am.PostAlerts(context.Background(), body); err != nil {
			t.Fatal(err)
		}
	}
	checkOnce(t, ec, n, 60*time.Second)
	accepted := testutil.ToFloat64(metrics.alertsReceived.WithLabelValues("firing"))
	dups := testutil.ToFloat64(metrics.deduplicated)
	t.Logf("bridges received %v firing alerts, %v of them duplicates; %d episodes ran once each", accepted, dups, n)
	if accepted < n {
		t.Errorf("bridges received %v alerts, want at least %d", accepted, n)
	}
	if n := testutil.ToFloat64(metrics.webhookRequests.WithLabelValues("202")); n < 2 {
		t.Errorf("%v webhook requests answered 202, want one per Alertmanager at least", n)
	}
}
