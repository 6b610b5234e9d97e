package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/testport"
)

// AlertmanagerOptions tune StartAlertmanagers.
type AlertmanagerOptions struct {
	// WebhookURLs are where every Alertmanager sends its notifications,
	// one webhook_config each (the way to reach several bridges without a
	// load balancer; each bridge gets every notification).
	WebhookURLs []string
	// TokenFile holds the bearer token sent with
	// http_config.authorization.credentials_file.
	TokenFile string
	// PeerTimeout is --cluster.peer-timeout: how long the i-th peer waits
	// for the notification log of the ones before it. Short values make
	// both members of a pair notify (what the dedup tests want).
	PeerTimeout time.Duration
	// RepeatInterval; default 4h.
	RepeatInterval time.Duration
	LogDir         string
}

// Alertmanager is one running prometheus-alertmanager.
type Alertmanager struct {
	*Proc
	URL       string // http://127.0.0.1:PORT
	Addr      string // 127.0.0.1:PORT
	Cluster   string // cluster listen address, "" when single
	ConfigDir string
}

// AlertmanagerConfig renders an alertmanager.yml with one receiver that
// posts every alert at once (group_wait 0s) and its resolution to each
// webhook URL.
func AlertmanagerConfig(webhookURLs []string, tokenFile string, repeat time.Duration) string {
	if repeat == 0 {
		repeat = 4 * time.Hour
	}
	var b strings.Builder
	fmt.Fprintf(&b, `route:
  receiver: medic
  group_by: ['alertname', 'agent', 'node', 'pool']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: %s
receivers:
  - name: medic
    webhook_configs:
`, repeat)
	for _, u := range webhookURLs {
		fmt.Fprintf(&b, `      - url: %q
        send_resolved: true
        max_alerts: 0
`, u)
		if tokenFile != "" {
			fmt.Fprintf(&b, `        http_config:
          authorization:
            type: Bearer
            credentials_file: %q
`, tokenFile)
		}
	}
	return b.String()
}

// StartAlertmanagers starts n Alertmanagers. With n == 1 clustering is off
// (--cluster.listen-address=""); with n > 1 they gossip with each other on
// loopback as one HA cluster.
func StartAlertmanagers(t testing.TB, n int, o AlertmanagerOptions) []*Alertmanager {
	t.Helper()
	bin := LookPath(t, "prometheus-alertmanager")
	if len(o.WebhookURLs) == 0 {
		t.Fatal("StartAlertmanagers: no webhook URL")
	}
	ams := make([]*Alertmanager, n)
	for i := range ams {
		ams[i] = &Alertmanager{Addr: testport.Addr(t), ConfigDir: t.TempDir()}
		ams[i].URL = "http://" + ams[i].Addr
		if n > 1 {
			ams[i].Cluster = testport.Addr(t)
		}
	}
	for i, am := range ams {
		cfgPath := filepath.Join(am.ConfigDir, "alertmanager.yml")
		if err := os.WriteFile(cfgPath, []byte(AlertmanagerConfig(o.WebhookURLs, o.TokenFile, o.RepeatInterval)), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{bin,
			"--config.file=" + cfgPath,
			"--storage.path=" + filepath.Join(am.ConfigDir, "data"),
			"--web.listen-address=" + am.Addr,
			"--log.level=debug",
		}
		if n == 1 {
			args = append(args, "--cluster.listen-address=")
		} else {
			pt := o.PeerTimeout
			if pt == 0 {
				pt = 15 * time.Second
			}
			args = append(args,
				"--cluster.listen-address="+am.Cluster,
				"--cluster.advertise-address="+am.Cluster,
				"--cluster.peer-timeout="+pt.String(),
				// Fast gossip settles the cluster in well under a second
				// (the settle check runs every 10 gossip intervals).
				"--cluster.gossip-interval=20ms",
				"--cluster.pushpull-interval=1s",
			)
			for j, other := range ams {
				if j != i {
					args = append(args, "--cluster.peer="+other.Cluster)
				}
			}
		}
		am.Proc = StartProc(t, fmt.Sprintf("alertmanager-%d", i), args, ProcOptions{Dir: am.ConfigDir, LogDir: o.LogDir})
	}
	for _, am := range ams {
		WaitHTTP(t, am.URL+"/-/ready", 30*time.Second, am.Proc)
	}
	if n > 1 {
		for _, am := range ams {
			Eventually(t, 20*time.Second, 50*time.Millisecond, am.Proc.Name+" cluster ready", func() (bool, string) {
				var st struct {
					Cluster struct {
						Status string `json:"status"`
						Peers  []any  `json:"peers"`
					} `json:"cluster"`
				}
				if err := GetJSON(context.Background(), am.URL+"/api/v2/status", &st); err != nil {
					return false, err.Error()
				}
				return st.Cluster.Status == "ready" && len(st.Cluster.Peers) == n,
					fmt.Sprintf("status %q, %d peers", st.Cluster.Status, len(st.Cluster.Peers))
			})
		}
	}
	return ams
}

// AMAlert is one entry of /api/v2/alerts.
type AMAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
	Status      struct {
		State string `json:"state"` // active, suppressed, unprocessed
	} `json:"status"`
}

// Alerts lists the alerts Alertmanager holds as not resolved.
func (am *Alertmanager) Alerts(ctx context.Context) ([]AMAlert, error) {
	var out []AMAlert
	err := GetJSON(ctx, am.URL+"/api/v2/alerts", &out)
	return out, err
}

// AlertsFor lists the unresolved alerts whose labels include match.
func (am *Alertmanager) AlertsFor(ctx context.Context, match map[string]string) ([]AMAlert, error) {
	all, err := am.Alerts(ctx)
	if err != nil {
		return nil, err
	}
	var out []AMAlert
	for _, a := range all {
		if hasLabels(a.Labels, match) {
			out = append(out, a)
		}
	}
	return out, nil
}

// PostAlerts pushes alerts straight into Alertmanager (what Prometheus
// does), for tests that need an alert without a rule.
func (am *Alertmanager) PostAlerts(ctx context.Context, body []byte) error {
	code, b, err := Do(ctx, "POST", am.URL+"/api/v2/alerts", map[string][]string{"Content-Type": {"application/json"}}, body)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("POST /api/v2/alerts: %d %s", code, b)
	}
	return nil
}
