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

// TestAPISwitchoverRequests: a manual switchover that cannot be what the
// operator meant is refused without touching the pool, and every refusal
// says why in words an operator understands.
func TestAPISwitchoverRequests(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "sw")
	h.startAgent("a1")
	h.startAgent("a2")
	c := h.startCoordinator(nil, func(o *CoordinatorOptions) { o.Pools[0].Agents = []string{"a1", "a2"} })
	srv := httptest.NewServer(NewAPI(APIOptions{Publisher: h.pub, Coordinator: c.c}))
	defer srv.Close()
	waitFor(t, 2*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 2 })
	if _, err := h.pub.Publish(t.Context(), "sw", "d1", []byte(`{"vlan":1}`), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "an active agent", func() bool { return h.status().Agent != "" })
	active := h.status().Agent
	epoch := h.status().Epoch

	tests := []struct {
		name, body string
		wantCode   int
		wantError  string
	}{
		{"misspelt target field", `{"agent":"a2"}`, 400, `unknown field "agent"`},
		{"trailing garbage", `{"target":"a2"}}`, 400, "data after the object"},
		{"not an agent of the pool", `{"target":"a9"}`, 409, "a9 is not an agent of pool sw (its agents: a1, a2)"},
		{"already active", `{"target":"` + active + `"}`, 409, active + " is already the active agent of pool sw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/api/v1/pools/sw/switchover", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body struct{ Error string }
			_ = json.Unmarshal(raw, &body)
			if resp.StatusCode != tc.wantCode || !strings.Contains(body.Error, tc.wantError) {
				t.Errorf("POST %s: %d %s; want %d with an error containing %q", tc.body, resp.StatusCode, raw, tc.wantCode, tc.wantError)
			}
		})
	}
	if st := h.status(); st.Agent != active || st.Epoch != epoch || st.Lock {
		t.Errorf("refused switchovers changed the pool: agent %s epoch %d lock %v; want agent %s epoch %d unlocked", st.Agent, st.Epoch, st.Lock, active, epoch)
	}
}
