package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
)

// TestAlertPath checks the plumbing every e2e scenario relies on, with a
// stand-in exporter and two webhooks: Prometheus scrapes at 1 s, the rule
// fires, the clustered Alertmanagers notify at once (group_wait 0) both
// webhooks with the bearer token, and the resolution follows.
func TestAlertPath(t *testing.T) {
	var down atomic.Bool
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := 1
		if down.Load() {
			v = 0
		}
		fmt.Fprintf(w, "# TYPE fake_up gauge\nfake_up{agent=\"a1\",node=\"n1\"} %d\n", v)
	}))
	defer exporter.Close()

	token, tokenFile := Token(t)
	type got struct {
		hook   int
		status string
		auth   string
	}
	var mu sync.Mutex
	var received []got
	hooks := make([]*httptest.Server, 2)
	for i := range hooks {
		hooks[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var msg template.Data
			b, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(b, &msg); err != nil {
				t.Errorf("webhook body: %v", err)
			}
			mu.Lock()
			for _, a := range msg.Alerts {
				received = append(received, got{i, a.Status, r.Header.Get("Authorization")})
			}
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
		}))
		defer hooks[i].Close()
	}

	rules := filepath.Join(t.TempDir(), "rules.yml")
	os.WriteFile(rules, []byte(`groups:
  - name: fake
    rules:
      - alert: FakeDown
        expr: fake_up == 0
        for: 5m
        labels: {severity: page}
`), 0o644)

	ams := StartAlertmanagers(t, 2, AlertmanagerOptions{
		WebhookURLs: []string{hooks[0].URL, hooks[1].URL},
		TokenFile:   tokenFile,
		PeerTimeout: 10 * time.Millisecond,
	})
	prom := StartPrometheus(t, PrometheusOptions{
		Targets:       []Target{{Job: "fake", Addrs: []string{exporter.Listener.Addr().String()}}},
		RuleFiles:     []string{rules},
		ZeroFor:       true,
		Alertmanagers: []string{ams[0].Addr, ams[1].Addr},
	})
	ctx := context.Background()
	Eventually(t, 10*time.Second, 100*time.Millisecond, "targets up", func() (bool, string) { return prom.TargetsUp(ctx) })

	count := func(status string) (per [2]int, auth string) {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range received {
			if g.status == status {
				per[g.hook]++
				auth = g.auth
			}
		}
		return per, auth
	}

	start := time.Now()
	down.Store(true)
	Eventually(t, 15*time.Second, 50*time.Millisecond, "firing notification at both webhooks", func() (bool, string) {
		per, _ := count("firing")
		return per[0] > 0 && per[1] > 0, fmt.Sprintf("%v", per)
	})
	t.Logf("kill → both webhooks: %s", time.Since(start))
	if _, auth := count("firing"); auth != "Bearer "+token {
		t.Errorf("Authorization = %q, want the bearer token", auth)
	}
	for _, am := range ams {
		as, err := am.AlertsFor(ctx, map[string]string{"alertname": "FakeDown", "agent": "a1"})
		if err != nil || len(as) != 1 {
			t.Errorf("%s: alerts %v %v", am.Name, as, err)
		}
	}
	pa, err := prom.AlertsFor(ctx, map[string]string{"alertname": "FakeDown"})
	if err != nil || len(pa) != 1 || pa[0].State != "firing" {
		t.Errorf("prometheus alerts: %+v %v", pa, err)
	}

	down.Store(false)
	Eventually(t, 15*time.Second, 50*time.Millisecond, "resolved notification", func() (bool, string) {
		per, _ := count("resolved")
		return per[0]+per[1] > 0, fmt.Sprintf("%v", per)
	})
	Eventually(t, 10*time.Second, 100*time.Millisecond, "alert gone from Alertmanager", func() (bool, string) {
		as, err := ams[0].AlertsFor(ctx, map[string]string{"alertname": "FakeDown"})
		return err == nil && len(as) == 0, fmt.Sprintf("%v %v", as, err)
	})
	v, err := prom.Query(ctx, `fake_up{agent="a1"}`)
	if err != nil || len(v) != 1 || v[0].Float() != 1 {
		t.Errorf("query: %v %v", v, err)
	}
}

func TestPrometheusConfigZeroFor(t *testing.T) {
	in := "      - alert: X\n        expr: up == 0\n        for: 30s\n        labels: {}\n"
	got := string(forRE.ReplaceAll([]byte(in), []byte("${1}for: 0s")))
	want := "      - alert: X\n        expr: up == 0\n        for: 0s\n        labels: {}\n"
	if got != want {
		t.Errorf("got %q want %q", got, want)
	}
}
