package exporter

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/testport"
)

// A start command that does not detach its agent (`cmd & echo $! >
// pidfile`) exits 0, and the agent dies with its process group: the
// restart fails and says why, instead of "restarted". The same agent
// started with setsid -f is confirmed.
func TestPidfileRestartConfirmed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   func(addr, pidfile string) []string
		wantErr string
	}{
		{"not detached", func(addr, pidfile string) []string {
			return []string{"sh", "-c", `"$0" --listen "$1" & echo $! > "$2"`, testagentBin, addr, pidfile}
		}, "exited 0 but the agent is not running"},
		{"pidfile not written", func(addr, pidfile string) []string {
			return []string{"true"}
		}, "exited 0 but the agent is not running"},
		{"setsid -f", func(addr, pidfile string) []string {
			return []string{"setsid", "-f", testagentBin, "--listen", addr, "--pidfile", pidfile}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidfile := filepath.Join(dir, "ext.pid")
			addr := testport.Addr(t)
			def := &hcl.Agent{
				Name: "ext", Pidfile: pidfile, Workdir: dir,
				Start: tc.start(addr, pidfile),
				Stop:  []string{"sh", "-c", `[ -f "$0" ] && kill "$(cat "$0")" 2>/dev/null; true`, pidfile},
			}
			n := startNode(t, Options{Config: configOf(def)}, nil)
			var err error
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				err = n.Restart(context.Background(), "ext")
				if err == nil || !strings.Contains(err.Error(), "node not running") || time.Now().After(deadline) {
					break
				}
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("restart: %v", err)
				}
				id := n.waitServing(t, "ext")
				t.Cleanup(func() { _ = procsig.Process(id.PID, syscall.SIGKILL) })
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "setsid -f") {
				t.Fatalf("restart = %v, want an error with %q naming setsid -f", err, tc.wantErr)
			}
		})
	}
}
