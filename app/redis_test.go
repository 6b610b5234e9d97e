package app

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/internal/redisx"
)

// An unreachable Redis at start-up is logged at once, with the URL but
// not its password; a reachable one is not.
func TestPingRedisAtStartup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	up := redistest.Start(t, redistest.Options{})
	for _, tc := range []struct {
		name, url string
		warn      bool
	}{
		{"unreachable", "redis://medic:s3cret@" + closed + "/0", true},
		{"reachable", up.URL(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			c, err := redisx.New(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pingRedis(context.Background(), c, tc.url, log)
			out := buf.String()
			if got := strings.Contains(out, "level=WARN"); got != tc.warn {
				t.Fatalf("warned = %v, want %v:\n%s", got, tc.warn, out)
			}
			if !tc.warn {
				return
			}
			if !strings.Contains(out, closed) || !strings.Contains(out, "refused") {
				t.Errorf("warning lacks the address %s or the error:\n%s", closed, out)
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("warning shows the password:\n%s", out)
			}
		})
	}
}
