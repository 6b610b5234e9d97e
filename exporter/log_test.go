package exporter

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medicops/medic/runbooks"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// lockedBuffer is a log destination tests read while the node writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fixedRunner answers every watchdog run with the same record.
type fixedRunner struct{ rec runbooks.RunRecord }

func (r fixedRunner) Run(context.Context, runbooks.Request) *runbooks.RunRecord {
	rec := r.rec
	return &rec
}

// The watchdog's log line names the run's error only when there is one.
func TestWatchdogLogLine(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rec     runbooks.RunRecord
		want    string
		notWant string
	}{
		{"recovered", runbooks.RunRecord{ID: "r1", Outcome: runbooks.OutcomeRecovered}, "outcome=recovered run=r1\n", "error="},
		{"failed", runbooks.RunRecord{ID: "r2", Outcome: runbooks.OutcomeFailed, Error: "restart: boom"}, `outcome=failed run=r2 error="restart: boom"` + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def, _ := testAgent(t, "logged")
			var out lockedBuffer
			n := startNode(t, Options{
				Config: configOf(def), Runner: fixedRunner{tc.rec}, WatchdogDebounce: -1,
				Logger: slog.New(slog.NewTextHandler(&out, nil)),
			}, nil)
			n.waitServing(t, "logged")
			a, err := n.agent("logged")
			if err != nil {
				t.Fatal(err)
			}
			n.trigger(a, alertDown, "test")
			var line string
			waitFor(t, 5*time.Second, "the watchdog log line", func() bool {
				for l := range strings.Lines(out.String()) {
					if strings.Contains(l, `msg="watchdog run"`) {
						line = l
						return true
					}
				}
				return false
			})
			if !strings.HasSuffix(line, tc.want) {
				t.Errorf("log line %q does not end in %q", line, tc.want)
			}
			if tc.notWant != "" && strings.Contains(line, tc.notWant) {
				t.Errorf("log line %q has %q", line, tc.notWant)
			}
		})
	}
}
