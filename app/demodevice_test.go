package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDemoDevice: the demo device keeps the device contract strictly, as
// the demo's printed commands say: only the next seq is applied, a lower
// epoch is refused, a replay is answered 2xx and applied once.
func TestDemoDevice(t *testing.T) {
	mux := http.NewServeMux()
	newDemoDevice().register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	push := func(dev string, seq, epoch int64, key, body string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/demo/devices/"+dev+"/config", strings.NewReader(body))
		req.Header.Set("X-Medic-Seq", strconv.FormatInt(seq, 10))
		req.Header.Set("X-Medic-Epoch", strconv.FormatInt(epoch, 10))
		req.Header.Set("X-Medic-Agent", "a"+strconv.FormatInt(epoch, 10))
		if key == "" {
			key = dev + ":" + strconv.FormatInt(seq, 10)
		}
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Outcome string }
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Outcome
	}
	for _, tc := range []struct {
		seq, epoch int64
		key, body  string
		code       int
		outcome    string
	}{
		{1, 1, "", `{"v": 1}`, 200, "applied"},
		{3, 1, "", `{"v":3}`, 409, "out-of-order"},
		{1, 1, "", `{"v":1}`, 200, "replay"},
		{2, 1, "", `{"v":2}`, 200, "applied"},
		{3, 2, "", `{"v":3}`, 200, "applied"},
		{4, 1, "", `{"v":4}`, 409, "stale-epoch"}, // the replaced agent
		{4, 2, "sw:9", `{"v":4}`, 400, "bad-request"},
		{4, 2, "", `not json`, 400, "bad-request"},
		{0, 2, "", `{}`, 400, "bad-request"},
		{4, 2, "", `{"v":4}`, 200, "applied"},
	} {
		if code, outcome := push("sw", tc.seq, tc.epoch, tc.key, tc.body); code != tc.code || outcome != tc.outcome {
			t.Errorf("push seq %d epoch %d key %q: %d %s, want %d %s", tc.seq, tc.epoch, tc.key, code, outcome, tc.code, tc.outcome)
		}
	}
	resp, err := http.Get(srv.URL + "/demo/devices/sw")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st demoDeviceState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Seq, Epoch     int64
		Agent, Payload string
	}
	var got []row
	for _, a := range st.Applied {
		got = append(got, row{a.Seq, a.Epoch, a.Agent, string(a.Payload)})
	}
	want := []row{{1, 1, "a1", `{"v":1}`}, {2, 1, "a1", `{"v":2}`}, {3, 2, "a2", `{"v":3}`}, {4, 2, "a2", `{"v":4}`}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("applied (-want +got):\n%s", d)
	}
	if st.LastSeq != 4 || st.MaxEpoch != 2 || st.Replays != 1 || st.Refused["stale-epoch"] != 1 || st.Refused["out-of-order"] != 1 {
		t.Errorf("state %+v", st)
	}
}
