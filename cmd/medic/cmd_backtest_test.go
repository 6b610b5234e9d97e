package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2030, 1, 8, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"now":                  now,
		"-7d":                  now.Add(-7 * 24 * time.Hour),
		"-90m":                 now.Add(-90 * time.Minute),
		"2030-01-01T00:00:00Z": time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		"1893456000":           time.Unix(1893456000, 0),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-7x", "2030-01-01"} {
		if _, err := parseTime(bad, now); err == nil || !strings.Contains(err.Error(), "want now, -7d") {
			t.Errorf("parseTime(%q): %v", bad, err)
		}
	}
}

func TestBacktestCommand(t *testing.T) {
	now := time.Date(2030, 1, 8, 0, 0, 0, 0, time.UTC)
	start := now.Add(-24 * time.Hour)
	// One episode of the library's MedicAgentDown for an agent of the
	// example estate, 10 minutes long.
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var vals []string
		for m := 0; m < 10; m++ {
			vals = append(vals, fmt.Sprintf(`[%d,"1"]`, start.Add(time.Duration(60+m)*time.Minute).Unix()))
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"ALERTS","alertstate":"firing","alertname":"MedicAgentDown","agent":"ops-agent"},"values":[%s]}]}}`, strings.Join(vals, ","))
	}))
	defer prom.Close()
	// The example estate with the library, as the README loads them.
	dir := t.TempDir()
	for _, f := range []string{estateFile, libraryDir + "/agent-recovery.hcl", libraryDir + "/heartbeat-restart.hcl", libraryDir + "/pool-switchover.hcl"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := backtestOptions{ConfigFile: dir, PrometheusURL: prom.URL, From: "-1d", To: "now", RunDuration: time.Minute, Format: "json"}
	var out, errb bytes.Buffer
	if err := backtest(context.Background(), o, now, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep struct {
		From     string `json:"from"`
		Episodes int    `json:"episodes"`
		Runbooks []struct {
			Runbook  string         `json:"runbook"`
			Runs     int            `json:"runs"`
			Outcomes map[string]int `json:"outcomes"`
		} `json:"runbooks"`
		Agents []map[string]any `json:"agents"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if rep.From != "2030-01-07T00:00:00Z" || rep.Episodes != 1 || len(rep.Runbooks) != 3 || rep.Runbooks[0].Runbook != "agent-recovery" ||
		rep.Runbooks[0].Runs != 1 || rep.Runbooks[0].Outcomes["would_act"] != 1 || len(rep.Agents) != 1 || rep.Agents[0]["node"] != "web-01" {
		t.Errorf("report:\n%s", out.String())
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	for _, c := range []struct {
		o    backtestOptions
		want string
	}{
		{backtestOptions{ConfigFile: dir, PrometheusURL: dead, From: "-7d", To: "now", RunDuration: time.Minute}, "Prometheus at " + dead + " is unreachable"},
		{backtestOptions{ConfigFile: dir, PrometheusURL: prom.URL, From: "now", To: "-1h", RunDuration: time.Minute}, "--from 2030-01-08T00:00:00Z is not before --to 2030-01-07T23:00:00Z"},
		{backtestOptions{ConfigFile: dir, PrometheusURL: prom.URL, From: "last week", To: "now", RunDuration: time.Minute}, `--from: "last week": want now, -7d`},
	} {
		err := backtest(context.Background(), c.o, now, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
}
