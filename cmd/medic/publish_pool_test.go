package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
)

// TestPublishWarnsOfUnknownPool: without --config.file, publishing into a
// pool nothing in Redis knows (a misspelt --pool) warns on stderr, and
// publishing into a pool Redis knows does not.
func TestPublishWarnsOfUnknownPool(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	// "switches" is known: an agent of it has registered.
	if err := srv.Client().HSet(ctx, "medic:{pool:switches}:agents", "cfg-agent-1", "1 5000 h").Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pool     string
		wantWarn bool
	}{
		{"switches", false},
		{"swiches", true},
		{"swiches", false}, // published into once: Redis knows it now
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		err := runPublish(ctx, publishOptions{RedisURL: srv.URL(), Prefix: "medic:", Pool: tc.pool, Device: "d1", File: "-", Timeout: 5 * time.Second},
			strings.NewReader(`{"vlan":1}`), &stdout, &stderr)
		if err != nil {
			t.Fatalf("publish to %s: %v", tc.pool, err)
		}
		warned := strings.Contains(stderr.String(), `warning: Redis knows no pool "`+tc.pool+`"`)
		if warned != tc.wantWarn || !strings.Contains(stdout.String(), `"seq"`) {
			t.Errorf("publish to %s: stdout %q stderr %q; want a warning: %v", tc.pool, stdout.String(), stderr.String(), tc.wantWarn)
		}
	}
}
