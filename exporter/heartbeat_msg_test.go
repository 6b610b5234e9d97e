package exporter

import (
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/probe"
)

// TestHeartbeatAPIErrorMessages: a heartbeat client with a wrong timeout is
// told what a right one looks like, in the API's terms rather than Go's.
func TestHeartbeatAPIErrorMessages(t *testing.T) {
	pass := &hcl.Probe{Kind: probe.Exec, Command: []string{"true"}, Timeout: time.Second}
	ext := &hcl.Agent{Name: "ext", Pidfile: "/nonexistent/ext.pid", Probe: pass}
	n := startNode(t, Options{Config: configOf(ext), CheckInterval: time.Hour}, nil)
	tests := []struct {
		body, want, notWant string
	}{
		{`{"timeout":15}`, `timeout must be a duration string such as {\"timeout\":\"15s\"}, not a number`, "Go struct"},
		{`{"timeout":"15"}`, `invalid timeout \"15\": want a positive duration with a unit, such as \"15s\"`, ""},
		{`{"timeout":"0s"}`, `invalid timeout \"0s\": want a positive duration`, ""},
	}
	for _, tt := range tests {
		code, body := call(t, "PUT", n.URL+"/api/v1/heartbeats/ext", tt.body)
		if code != 400 || !strings.Contains(body, tt.want) || (tt.notWant != "" && strings.Contains(body, tt.notWant)) {
			t.Errorf("PUT %s = %d %s; want 400 containing %s", tt.body, code, body, tt.want)
		}
	}
}
