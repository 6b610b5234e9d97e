package main

import (
	"strings"
	"testing"
	"time"
)

func TestGuard(t *testing.T) {
	const fixture = "./testdata/fixture"
	for _, tt := range []struct {
		name     string
		env      string
		deadline time.Duration
		stopped  time.Duration
		code     int
		want     []string
	}{
		{"passes", "", time.Minute, time.Minute, 0, []string{"ok  \tgithub.com/medicops/medic/internal/testguard/testdata/fixture", "4 passed, 0 failed, 0 skipped"}},
		{"fails", "FIXTURE_FAIL", time.Minute, time.Minute, 1, []string{"boom", "--- FAIL: TestFail/sub", "FAIL packages: github.com/medicops/medic/internal/testguard/testdata/fixture", "3 passed, 2 failed"}},
		{"hangs past the deadline", "FIXTURE_HANG", 3 * time.Second, time.Minute, 1, []string{"exceeded its wall-clock limit of 3s; still running:", "fixture, for", "TestHang ("}},
		{"stops its own group", "FIXTURE_STOP", time.Minute, 2 * time.Second, 1, []string{"has been stopped (SIGSTOP)", "fixture, for"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv(tt.env, "1")
			}
			var out strings.Builder
			start := time.Now()
			code, counts := run(&out, tt.deadline, tt.stopped, []string{"-count=1", fixture})
			if !strings.Contains(out.String(), counts+"\n") {
				t.Errorf("counts %q not printed", counts)
			}
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", code, tt.code, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if d := time.Since(start); d > 45*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}
