package app

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medicops/medic/internal/redistest"
)

// medic serve warns at start when the token file is readable by group or
// others, and is quiet when only its owner can read it.
func TestTokenFileModeWarning(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "empty.hcl")
	os.WriteFile(cfg, nil, 0o644)
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}} {
		tokenFile := filepath.Join(dir, "token")
		os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
		if err := os.Chmod(tokenFile, tc.mode); err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		r := start(t, Options{
			ConfigFile: cfg, RedisURL: rs.URL(), ListenAddresses: []string{"127.0.0.1:0"}, TokenFile: tokenFile,
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
		})
		r.stop()
		got := strings.Contains(logs.String(), "token file is readable by group or others")
		if got != tc.warn {
			t.Errorf("token file mode %04o: warned %v, want %v; log:\n%s", tc.mode, got, tc.warn, logs.String())
		}
		if tc.warn && !strings.Contains(logs.String(), "mode="+strings.TrimPrefix(tc.mode.String(), "-")) && !strings.Contains(logs.String(), "chmod 600") {
			t.Errorf("the warning does not say how to fix it: %s", logs.String())
		}
		os.Remove(tokenFile)
	}
}
