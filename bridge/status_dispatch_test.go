package bridge

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The status page lists blocked devices with a retry and a skip button
// each (posting to the pool API with a reason), and says when it shows
// only the first of them.
func TestStatusPageBlockedDevices(t *testing.T) {
	now := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	pools := func(context.Context) ([]PoolStatus, error) {
		return []PoolStatus{{Pool: "switches", Agent: "a1", Status: "active", BlockedTotal: 3,
			Blocked: []BlockedDevice{{Device: "sw-07", Seq: 12, Pending: 4, Attempts: 10, LastStatus: 400,
				LastError: "HTTP 400 Bad Request", Since: now.Add(-5 * time.Minute)}}}}, nil
	}
	rec := httptest.NewRecorder()
	NewStatusPage(StatusOptions{Pools: pools, Refresh: -1, Now: func() time.Time { return now }}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	for _, w := range []string{
		`<h2 id="blocked-devices">Blocked devices</h2>`,
		`data-device="sw-07"`,
		`action="/api/v1/pools/switches/devices/sw-07/retry"`,
		`formaction="/api/v1/pools/switches/devices/sw-07/skip"`,
		`name="reason"`,
		`HTTP 400 Bad Request`,
		`1 of 3 blocked devices of pool <code>switches</code> shown`,
	} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	rec = httptest.NewRecorder()
	NewStatusPage(StatusOptions{Refresh: -1}).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(rec.Body.String(), "No blocked devices.") {
		t.Error("empty page lacks \"No blocked devices.\"")
	}
}
