package queue

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAPI(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "api")
	h.startAgent("a1")
	h.startAgent("a2")
	c := h.startCoordinator(nil)
	srv := httptest.NewServer(NewAPI(APIOptions{Publisher: h.pub, Coordinator: c.c}))
	defer srv.Close()
	waitFor(t, 2*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 2 })

	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: non-JSON answer %q", method, path, raw)
		}
		return resp.StatusCode, m
	}
	big := `{"device":"d","payload":"` + strings.Repeat("x", MaxBody) + `"}`
	tests := []struct {
		method, path, body string
		wantCode           int
		wantField          string
		wantValue          any
	}{
		{"POST", "/api/v1/pools/api/configs", `{"device":"d1","payload":{"vlan":10}}`, 201, "seq", 1.0},
		{"POST", "/api/v1/pools/api/configs", `{"device":"d1","payload":{"vlan":11},"idempotency_key":"x1"}`, 201, "seq", 2.0},
		{"POST", "/api/v1/pools/api/configs", `{"device":"d1","payload":{"vlan":11},"idempotency_key":"x1"}`, 200, "seq", 2.0},
		{"POST", "/api/v1/pools/api/configs", `{"device":"d2","payload":[1,2]}`, 201, "seq", 1.0},
		{"POST", "/api/v1/pools/api/configs", `{"device":"d2"}`, 400, "error", nil},
		{"POST", "/api/v1/pools/api/configs", `{"device":`, 400, "error", nil},
		{"POST", "/api/v1/pools/api/configs", big, 413, "error", nil},
		{"POST", "/api/v1/pools/other/configs", `{"device":"d","payload":1}`, 404, "error", nil},
		{"GET", "/api/v1/pools/api", "", 200, "agent", "a1"},
		{"POST", "/api/v1/pools/api/switchover", `{"target":"a2"}`, 200, "to", "a2"},
		{"POST", "/api/v1/pools/api/switchover", `{"target":"a2"}`, 409, "error", nil},
		{"POST", "/api/v1/pools/api/switchover", ``, 200, "to", "a1"},
		{"GET", "/api/v1/pools/api", "", 200, "epoch", 3.0},
		{"GET", "/api/v1/pools/nope", "", 404, "error", nil},
		{"DELETE", "/api/v1/pools/api", "", 405, "", nil},
	}
	for _, tc := range tests {
		if tc.wantCode == 405 {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 405 {
				t.Errorf("%s %s: %d, want 405", tc.method, tc.path, resp.StatusCode)
			}
			continue
		}
		code, m := do(tc.method, tc.path, tc.body)
		if code != tc.wantCode {
			t.Errorf("%s %s %.60s: code %d, want %d (%v)", tc.method, tc.path, tc.body, code, tc.wantCode, m)
			continue
		}
		if tc.wantValue == nil {
			if _, ok := m[tc.wantField]; !ok {
				t.Errorf("%s %s: no %q in %v", tc.method, tc.path, tc.wantField, m)
			}
		} else if m[tc.wantField] != tc.wantValue {
			t.Errorf("%s %s: %s = %v, want %v (%v)", tc.method, tc.path, tc.wantField, m[tc.wantField], tc.wantValue, m)
		}
	}
	// Everything published through the API reached the devices in order.
	waitFor(t, 5*time.Second, "delivery", func() bool { return h.dev.Applied("d1") == 2 && h.dev.Applied("d2") == 1 })
	_, st := do("GET", "/api/v1/pools/api", "")
	for _, f := range []string{"agent", "lock", "epoch", "backlog", "buffer", "agents"} {
		if _, ok := st[f]; !ok {
			t.Errorf("status lacks %q: %v", f, st)
		}
	}
}
