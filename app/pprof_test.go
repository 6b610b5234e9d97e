package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/medicops/medic/internal/redistest"
)

// TestEnablePprof: /debug/pprof/ is served only with --web.enable-pprof.
func TestEnablePprof(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte("runbook \"r\" {\n  match { alertname = \"X\" }\n}\n"), 0o644)
	for _, tc := range []struct {
		enable bool
		want   int
	}{{false, 404}, {true, 200}} {
		r := start(t, Options{ConfigFile: dir, RedisURL: rs.URL(), ListenAddresses: []string{"127.0.0.1:0"}, EnablePprof: tc.enable})
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
			if code, _ := httpDo(t, "GET", r.base+path, "", ""); code != tc.want {
				t.Errorf("EnablePprof=%v: GET %s = %d, want %d", tc.enable, path, code, tc.want)
			}
		}
		r.stop()
	}
}
