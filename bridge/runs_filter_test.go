package bridge

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRunsFilters: GET /api/v1/runs refuses a filter it does not know and
// an outcome no run can have, instead of answering with every run (or
// none) as if the filter had been applied.
func TestRunsFilters(t *testing.T) {
	tb := startTestBridge(t, testHCL, nil)
	tests := []struct {
		query     string
		wantCode  int
		wantError string
	}{
		{"", 200, ""},
		{"agent=a&node=n1&runbook=r&outcome=recovered&limit=10", 200, ""},
		{"outcome=escalated", 200, ""},
		{"agnt=a", 400, `unknown parameter "agnt": want agent, node, runbook, outcome, limit`},
		{"agent=a&since=1h", 400, `unknown parameter "since"`},
		{"outcome=recoverd", 400, "outcome: want one of healthy, recovered, escalated"},
		{"limit=0", 400, "limit: want an integer from 1 to"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tb.srv.URL+"/api/v1/runs?"+tc.query, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body struct {
				Runs  []json.RawMessage `json:"runs"`
				Error string            `json:"error"`
			}
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("non-JSON answer %q", raw)
			}
			if resp.StatusCode != tc.wantCode || !strings.Contains(body.Error, tc.wantError) || (tc.wantCode == 200 && body.Runs == nil) {
				t.Errorf("GET /api/v1/runs?%s: %d %s; want %d with error containing %q", tc.query, resp.StatusCode, raw, tc.wantCode, tc.wantError)
			}
		})
	}
}
