package app

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/hcl"
)

// A reload swaps the configuration only when loading and every apply step
// succeed; the caller gets the error; after run returns, a reload is
// refused at once instead of waiting forever.
func TestReloader(t *testing.T) {
	oldCfg, newCfg := &hcl.Config{}, &hcl.Config{}
	errLoad, errApply := errors.New("load failed"), errors.New("apply failed")
	for _, tc := range []struct {
		name     string
		loadErr  error
		applyErr error
		want     *hcl.Config
		applied  int
	}{
		{"ok", nil, nil, newCfg, 2},
		{"load fails", errLoad, nil, oldCfg, 0},
		{"apply fails", nil, errApply, oldCfg, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReloader(oldCfg, func() (*hcl.Config, error) {
				if tc.loadErr != nil {
					return nil, tc.loadErr
				}
				return newCfg, nil
			}, slog.New(slog.DiscardHandler))
			t0, t1 := time.Unix(1000, 0), time.Unix(2000, 0)
			r.okTime.Set(float64(t0.Unix())) // as if started at t0
			r.now = func() time.Time { return t1 }
			applied := 0
			r.apply = append(r.apply,
				func(_ context.Context, c *hcl.Config) error {
					if c != newCfg {
						t.Errorf("apply got %p, want the new config %p", c, newCfg)
					}
					applied++
					return tc.applyErr
				},
				func(context.Context, *hcl.Config) error { applied++; return nil })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { r.run(ctx); close(done) }()

			err := r.Reload(context.Background())
			want := tc.loadErr
			if want == nil {
				want = tc.applyErr
			}
			if err != want {
				t.Errorf("Reload = %v, want %v", err, want)
			}
			if r.Config() != tc.want {
				t.Errorf("Config after reload: old=%v, want old=%v", r.Config() == oldCfg, tc.want == oldCfg)
			}
			if applied != tc.applied {
				t.Errorf("%d apply steps ran, want %d", applied, tc.applied)
			}
			wantOK, wantTime := 0.0, float64(t0.Unix())
			if tc.want == newCfg {
				wantOK, wantTime = 1, float64(t1.Unix())
			}
			if got := testutil.ToFloat64(r.ok); got != wantOK {
				t.Errorf("medic_config_last_reload_successful = %v, want %v", got, wantOK)
			}
			if got := testutil.ToFloat64(r.okTime); got != wantTime {
				t.Errorf("medic_config_last_reload_success_timestamp_seconds = %v, want %v", got, wantTime)
			}

			cancel()
			<-done
			rctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
			defer stop()
			if err := r.Reload(rctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Reload after run returned = %v, want refused at once", err)
			}
		})
	}
}

// A config error at start-up or reload says what to fix: the detail and
// the source line, not only the summary.
func TestLoadConfigErrorHasDetail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "estate.hcl")
	src := "agent \"a\" {\n  command = [\"/bin/a\"]\n\n  heartbeat {\n    timeout = \"15 seconds\"\n  }\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("LoadConfig of a bad duration succeeded")
	}
	for _, want := range []string{
		path + ":5:15: error: Invalid duration",
		`"15 seconds"`,           // the detail names the bad value
		`timeout = "15 seconds"`, // the snippet shows the line
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}
