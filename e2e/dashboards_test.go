package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/medicops/medic/e2e/harness"
)

// dashboard is the part of a Grafana dashboard JSON the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

// panelQuery is one target of one panel.
type panelQuery struct {
	dashboard, panel, expr string
}

// loadDashboards parses every dashboard and checks its structure: unique
// uids and panel ids, panels inside the 24-column grid, a target with an
// expression on every non-row panel, and the ${datasource} variable.
func loadDashboards(t testing.TB, root string) ([]dashboard, []panelQuery) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "deploy", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	var out []dashboard
	var queries []panelQuery
	uids := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || uids[d.UID] {
			t.Errorf("%s: uid %q empty or repeated", f, d.UID)
		}
		uids[d.UID] = true
		ids := map[int]bool{}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if ids[p.ID] {
					t.Errorf("%s: panel id %d repeated", f, p.ID)
				}
				ids[p.ID] = true
				if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
					t.Errorf("%s: panel %q outside the grid: %+v", f, p.Title, p.GridPos)
				}
				if p.Type == "row" {
					walk(p.Panels)
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("%s: panel %q does not use ${datasource}", f, p.Title)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no targets", f, p.Title)
				}
				for _, tg := range p.Targets {
					if strings.TrimSpace(tg.Expr) == "" {
						t.Errorf("%s: panel %q target %s has no expr", f, p.Title, tg.RefID)
					}
					queries = append(queries, panelQuery{d.UID, p.Title, tg.Expr})
				}
			}
		}
		walk(d.Panels)
		out = append(out, d)
	}
	return out, queries
}

var (
	intervalVar = regexp.MustCompile(`\$(\{)?__(rate_interval|interval|range)(\})?`)
	labelVar    = regexp.MustCompile(`\$(\{)?(node|agent|pool)(\})?`)
	labelValues = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
)

// instantiate replaces Grafana's variables the way a dashboard showing
// every node, agent and pool would.
func instantiate(expr string) string {
	expr = intervalVar.ReplaceAllString(expr, "1m")
	return labelVar.ReplaceAllString(expr, ".*")
}

func TestDashboardsStructure(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	_, queries := loadDashboards(t, root)
	if len(queries) < 20 {
		t.Errorf("only %d panel queries", len(queries))
	}
	for _, q := range queries {
		if e := instantiate(q.expr); strings.Contains(e, "$") {
			t.Errorf("%s/%s: variable left in %q", q.dashboard, q.panel, e)
		}
	}
	// Every metric of docs/design.md §6 is on a dashboard.
	for _, m := range designMetrics {
		if !slices.ContainsFunc(queries, func(q panelQuery) bool { return strings.Contains(q.expr, m) }) {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// designMetrics are the metric names of docs/design.md §6, plus the node's
// collector metrics.
var designMetrics = []string{
	"medic_agent_up", "medic_agent_probe_success", "medic_agent_probe_duration_seconds",
	"medic_agent_cpu_seconds_total", "medic_agent_resident_memory_bytes", "medic_agent_memory_ratio",
	"medic_agent_disk_used_ratio", "medic_agent_heartbeat_age_seconds", "medic_agent_heartbeat_timeout_seconds",
	"medic_agent_restarts_total",
	"medic_webhook_requests_total", "medic_alerts_received_total", "medic_alerts_deduplicated_total",
	"medic_remediations_total", "medic_remediation_duration_seconds",
	"medic_dispatch_published_total", "medic_dispatch_delivered_total", "medic_dispatch_backlog",
	"medic_dispatch_switchovers_total", "medic_dispatch_switchover_duration_seconds",
	"medic_scrape_collector_success", "medic_scrape_collector_duration_seconds",
	// docs/design.md §5
	"medic_dispatch_devices", "medic_dispatch_oldest_pending_seconds",
}

// testDashboards runs every panel query and every variable query of every
// dashboard against the stack's Prometheus, after the scenarios, and
// requires each to return data.
func testDashboards(t *testing.T, s *stack) {
	dashes, queries := loadDashboards(t, s.root)
	for _, d := range dashes {
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			m := labelValues.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("%s: variable %s: want label_values(expr, label), got %q", d.UID, v.Name, v.Definition)
				continue
			}
			queries = append(queries, panelQuery{d.UID, "variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
		}
	}
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for _, q := range queries {
		expr := instantiate(q.expr)
		var last string
		for {
			v, err := s.prom.Query(ctx, expr)
			if err == nil && len(v) > 0 {
				break
			}
			last = fmt.Sprintf("%d samples, err %v", len(v), err)
			if time.Now().After(deadline) {
				t.Errorf("%s / %s: no data for %s (%s)", q.dashboard, q.panel, expr, last)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// The provisioning files are what Grafana reads: strict YAML with a
// Prometheus datasource and a file provider.
func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string         `yaml:"name"`
			UID       string         `yaml:"uid"`
			Type      string         `yaml:"type"`
			Access    string         `yaml:"access"`
			URL       string         `yaml:"url"`
			IsDefault bool           `yaml:"isDefault"`
			JSONData  map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			Folder                string `yaml:"folder"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	for _, f := range []struct {
		path string
		v    any
	}{
		{deployFile(t, "grafana", "provisioning", "datasources", "medic.yml"), &ds},
		{deployFile(t, "grafana", "provisioning", "dashboards", "medic.yml"), &dp},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, f.v); err != nil {
			t.Errorf("%s: %v", f.path, err)
		}
	}
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Errorf("datasources: %+v", ds)
	}
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options.Path == "" {
		t.Errorf("dashboard providers: %+v", dp)
	}
}
