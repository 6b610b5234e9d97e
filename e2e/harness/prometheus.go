package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/testport"
)

// Target is one scrape job.
type Target struct {
	Job   string
	Addrs []string // host:port
	// Scheme and bearer token, for targets behind auth; empty means http.
	Scheme string
}

// PrometheusOptions tune StartPrometheus.
type PrometheusOptions struct {
	Targets []Target
	// RuleFiles are copied into the Prometheus directory and loaded.
	RuleFiles []string
	// ZeroFor rewrites every `for:` in the copied rule files to 0s, so the
	// tests do not wait out production pending periods.
	ZeroFor bool
	// Alertmanagers are host:port of Alertmanagers to send alerts to.
	Alertmanagers []string
	// Interval is the scrape and evaluation interval; default 1s.
	Interval time.Duration
	LogDir   string
	// DataDir, when set, is the TSDB directory Prometheus opens (e.g. one
	// backfilled with promtool tsdb create-blocks-from); default a fresh
	// one.
	DataDir string
	// Args are more command-line flags, e.g.
	// --storage.tsdb.retention.time=100y for old backfilled history.
	Args []string
}

// Prometheus is a running prometheus server.
type Prometheus struct {
	*Proc
	URL string // http://127.0.0.1:PORT
	Dir string
}

var forRE = regexp.MustCompile(`(?m)^(\s*)for:\s*\S+\s*$`)

// StartPrometheus writes a config, starts prometheus and waits for /-/ready.
func StartPrometheus(t testing.TB, o PrometheusOptions) *Prometheus {
	t.Helper()
	bin := LookPath(t, "prometheus")
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	dir := t.TempDir()
	var rules []string
	for _, rf := range o.RuleFiles {
		b, err := os.ReadFile(rf)
		if err != nil {
			t.Fatalf("rule file: %v", err)
		}
		if o.ZeroFor {
			b = forRE.ReplaceAll(b, []byte("${1}for: 0s"))
		}
		dst := filepath.Join(dir, filepath.Base(rf))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, dst)
	}
	cfg := PrometheusConfig(o.Interval, o.Targets, rules, o.Alertmanagers)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testport.Addr(t)
	p := &Prometheus{URL: "http://" + addr, Dir: dir}
	data := o.DataDir
	if data == "" {
		data = filepath.Join(dir, "data")
	}
	p.Proc = StartProc(t, "prometheus", append([]string{bin,
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + data,
		"--web.listen-address=" + addr,
		"--web.enable-lifecycle",
		"--log.level=info",
	}, o.Args...), ProcOptions{Dir: dir, LogDir: o.LogDir})
	WaitHTTP(t, p.URL+"/-/ready", 30*time.Second, p.Proc)
	return p
}

// PrometheusConfig renders a prometheus.yml.
func PrometheusConfig(interval time.Duration, targets []Target, rules, alertmanagers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n  scrape_timeout: %s\n",
		interval, interval, interval)
	if len(rules) > 0 {
		b.WriteString("rule_files:\n")
		for _, r := range rules {
			fmt.Fprintf(&b, "  - %q\n", r)
		}
	}
	if len(alertmanagers) > 0 {
		b.WriteString("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets:\n")
		for _, a := range alertmanagers {
			fmt.Fprintf(&b, "            - %q\n", a)
		}
	}
	b.WriteString("scrape_configs:\n")
	for _, tg := range targets {
		fmt.Fprintf(&b, "  - job_name: %q\n", tg.Job)
		if tg.Scheme != "" {
			fmt.Fprintf(&b, "    scheme: %s\n", tg.Scheme)
		}
		b.WriteString("    static_configs:\n      - targets:\n")
		for _, a := range tg.Addrs {
			fmt.Fprintf(&b, "          - %q\n", a)
		}
	}
	return b.String()
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Float is the sample's value.
func (s Sample) Float() float64 {
	str, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(str, 64)
	return f
}

type promResponse[T any] struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      T      `json:"data"`
}

// Query runs an instant query. Scalars and strings come back as one sample.
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Sample, error) {
	var r promResponse[struct {
		ResultType string          `json:"resultType"`
		Raw        json.RawMessage `json:"result"`
	}]
	if err := GetJSON(ctx, p.URL+"/api/v1/query?query="+url.QueryEscape(expr), &r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", expr, r.ErrorType, r.Error)
	}
	switch r.Data.ResultType {
	case "vector":
		var v []Sample
		if err := json.Unmarshal(r.Data.Raw, &v); err != nil {
			return nil, err
		}
		return v, nil
	case "scalar", "string":
		var v [2]any
		if err := json.Unmarshal(r.Data.Raw, &v); err != nil {
			return nil, err
		}
		return []Sample{{Value: v}}, nil
	case "matrix":
		var m []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		}
		if err := json.Unmarshal(r.Data.Raw, &m); err != nil {
			return nil, err
		}
		var out []Sample
		for _, s := range m {
			if len(s.Values) > 0 {
				out = append(out, Sample{Metric: s.Metric, Value: s.Values[len(s.Values)-1]})
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("query %q: unknown result type %q", expr, r.Data.ResultType)
}

// PromAlert is one entry of /api/v1/alerts.
type PromAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending, firing
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// Alerts lists the pending and firing alerts.
func (p *Prometheus) Alerts(ctx context.Context) ([]PromAlert, error) {
	var r promResponse[struct {
		Alerts []PromAlert `json:"alerts"`
	}]
	if err := GetJSON(ctx, p.URL+"/api/v1/alerts", &r); err != nil {
		return nil, err
	}
	return r.Data.Alerts, nil
}

// AlertsFor lists the alerts whose labels include every label in match.
func (p *Prometheus) AlertsFor(ctx context.Context, match map[string]string) ([]PromAlert, error) {
	all, err := p.Alerts(ctx)
	if err != nil {
		return nil, err
	}
	var out []PromAlert
	for _, a := range all {
		if hasLabels(a.Labels, match) {
			out = append(out, a)
		}
	}
	return out, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// TargetsUp reports whether every active scrape target is up.
func (p *Prometheus) TargetsUp(ctx context.Context) (bool, string) {
	var r promResponse[struct {
		ActiveTargets []struct {
			ScrapeURL string `json:"scrapeUrl"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"activeTargets"`
	}]
	if err := GetJSON(ctx, p.URL+"/api/v1/targets", &r); err != nil {
		return false, err.Error()
	}
	if len(r.Data.ActiveTargets) == 0 {
		return false, "no targets"
	}
	for _, tg := range r.Data.ActiveTargets {
		if tg.Health != "up" {
			return false, fmt.Sprintf("%s: %s %s", tg.ScrapeURL, tg.Health, tg.LastError)
		}
	}
	return true, ""
}
