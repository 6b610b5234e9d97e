package queue

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPermanent(t *testing.T) {
	for code, want := range map[int]bool{400: true, 401: true, 403: true, 404: true, 422: true, 499: true,
		408: false, 409: false, 425: false, 429: false, 500: false, 503: false, 200: false, 0: false} {
		if got := Permanent(code); got != want {
			t.Errorf("Permanent(%d) = %v, want %v", code, got, want)
		}
	}
}

// TestBlockedDeviceRetryAndSkip: a device that rejects one config with
// 400 is blocked after max_attempts answers while the other devices
// finish — even with an in-memory buffer smaller than its backlog; a 503
// is retried in state retrying without counting; a skip moves the config
// to the dead letters and the next ones go through in order; a retry
// after the device is fixed delivers the held config. API, metrics and
// the device's history agree.
func TestBlockedDeviceRetryAndSkip(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "blk")
	const maxAttempts = 3
	reject := func(seqs ...int64) func(string, int64) int {
		return func(d string, seq int64) int {
			for _, s := range seqs {
				if d == "bad" && seq == s {
					return http.StatusBadRequest
				}
			}
			return 0
		}
	}
	h.dev.SetReject(reject(3))
	h.startAgent("a1", func(o *ConsumerOptions) { o.MaxAttempts = maxAttempts; o.MaxBuffered = 8 })
	reg := prometheus.NewRegistry()
	c := h.startCoordinator(nil, func(o *CoordinatorOptions) { o.Registerer = reg })
	srv := httptest.NewServer(NewAPI(APIOptions{Publisher: h.pub, Coordinator: c.c,
		Who: func(_ *http.Request, by string) string { return "user:" + by }}))
	defer srv.Close()
	waitFor(t, 2*time.Second, "agent registered", func() bool { return len(h.status().Agents) == 1 })
	do := func(method, path, ctype, body string, v any) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if v != nil {
			if err := json.Unmarshal(raw, v); err != nil {
				t.Fatalf("%s %s: %v in %q", method, path, err, raw)
			}
		}
		return resp.StatusCode
	}
	device := func(d string) DeviceState {
		t.Helper()
		var st DeviceState
		if code := do("GET", "/api/v1/pools/blk/devices/"+d, "", "", &st); code != 200 {
			t.Fatalf("GET device %s: %d", d, code)
		}
		return st
	}

	ctx := context.Background()
	h.produce(ctx, []string{"bad", "x", "y"}, 60, 0) // 20 each: bad's seq 3 is rejected
	waitFor(t, 20*time.Second, "x and y applied everything", func() bool {
		return h.dev.Applied("x") == 20 && h.dev.Applied("y") == 20
	})
	waitFor(t, 10*time.Second, "bad blocked", func() bool { return device("bad").State == StateBlocked })
	st := device("bad")
	if st.AppliedSeq != 2 || st.NextSeq != 3 || st.Pending != 18 || st.Attempts != maxAttempts || st.LastStatus != 400 || st.Since == nil {
		t.Fatalf("blocked device state %+v", st)
	}
	time.Sleep(300 * time.Millisecond) // the agent must not push to it any more
	rejected := 0
	for _, ev := range h.dev.History("bad") {
		if ev.Outcome == "rejected" {
			rejected++
		}
	}
	if rejected != maxAttempts {
		t.Fatalf("bad got %d rejected pushes, want exactly max_attempts=%d", rejected, maxAttempts)
	}
	var page DevicePage
	if code := do("GET", "/api/v1/pools/blk/devices?state=blocked", "", "", &page); code != 200 || page.Total != 1 || len(page.Devices) != 1 || page.Devices[0].Device != "bad" {
		t.Fatalf("blocked list: %d %+v", code, page)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP medic_dispatch_devices Devices of the pool by state: ok, retrying (its next config failed and is retried with backoff), blocked (rejected max_attempts times; needs an operator's retry or skip).
# TYPE medic_dispatch_devices gauge
medic_dispatch_devices{pool="blk",state="blocked"} 1
medic_dispatch_devices{pool="blk",state="ok"} 2
medic_dispatch_devices{pool="blk",state="retrying"} 0
`), "medic_dispatch_devices"); err != nil {
		t.Fatal(err)
	}
	if age := gauge(t, reg, "medic_dispatch_oldest_pending_seconds"); age < 0.3 {
		t.Fatalf("oldest pending %v s while bad's configs wait since before its 300 ms of silence", age)
	}
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}

	// Refused: no reason, a device that is not blocked, an unknown one.
	var e map[string]any
	if code := do("POST", "/api/v1/pools/blk/devices/bad/skip", "", `{"by":"ann"}`, &e); code != 400 {
		t.Fatalf("skip without reason: %d %v", code, e)
	}
	if code := do("POST", "/api/v1/pools/blk/devices/x/skip", "", `{"by":"ann","reason":"r"}`, &e); code != 409 {
		t.Fatalf("skip of an ok device: %d %v", code, e)
	}
	if code := do("POST", "/api/v1/pools/blk/devices/nope/retry", "", `{"by":"ann","reason":"r"}`, &e); code != 404 {
		t.Fatalf("retry of an unknown device: %d %v", code, e)
	}

	// Skip, JSON sent as curl -d would (a form's Content-Type).
	var res ActionResult
	if code := do("POST", "/api/v1/pools/blk/devices/bad/skip", "application/x-www-form-urlencoded",
		`{"by":"ann","reason":"vlan 3 retired"}`, &res); code != 200 || res.Seq != 3 || res.By != "user:ann" || res.DeadLetter == "" {
		t.Fatalf("skip: %d %+v", code, res)
	}
	h.dev.Skip("bad", 3)
	// Seq 9 is rejected too: block again, then fix the device and retry.
	h.dev.SetReject(reject(3, 9))
	waitFor(t, 10*time.Second, "bad blocked at 9", func() bool {
		s := device("bad")
		return s.State == StateBlocked && s.NextSeq == 9
	})
	if got := h.dev.Applied("bad"); got != 8 {
		t.Fatalf("bad applied up to %d, want 8 (3 skipped, then 4..8 in order)", got)
	}
	h.dev.SetReject(nil)
	if code := do("POST", "/api/v1/pools/blk/devices/bad/retry", "", `{"reason":"device fixed"}`, &res); code != 200 || res.Seq != 9 {
		t.Fatalf("retry: %d %+v", code, res)
	}
	h.waitApplied(10 * time.Second)
	h.waitSettled(10 * time.Second)
	h.check()
	if st := device("bad"); st.State != StateOK || st.AppliedSeq != 20 || st.Pending != 0 {
		t.Fatalf("after retry: %+v", st)
	}
	if age := gauge(t, reg, "medic_dispatch_oldest_pending_seconds"); age != 0 {
		t.Fatalf("oldest pending %v s with nothing pending", age)
	}
	var dl DeadLetterPage
	if code := do("GET", "/api/v1/pools/blk/dead-letters", "", "", &dl); code != 200 || dl.Total != 1 || len(dl.DeadLetters) != 1 {
		t.Fatalf("dead letters: %d %+v", code, dl)
	}
	d := dl.DeadLetters[0]
	h.mu.Lock()
	want := h.published["bad"][2]
	h.mu.Unlock()
	if d.Device != "bad" || d.Seq != 3 || d.By != "user:ann" || d.Reason != "vlan 3 retired" || d.LastStatus != 400 || d.Attempts != maxAttempts || !jsonEq(string(d.Payload), want) {
		t.Fatalf("dead letter %+v (payload want %s)", d, want)
	}
	acts, err := client.XRange(ctx, h.keys.Actions(), "-", "+").Result()
	if err != nil || len(acts) != 2 || acts[0].Values["action"] != "skip" || acts[1].Values["action"] != "retry" {
		t.Fatalf("audit: %v %v", acts, err)
	}
}

// TestServerErrorsRetryWithoutBlocking: 5xx answers never block.
func TestServerErrorsRetryWithoutBlocking(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "srv5")
	h.dev.SetReject(func(d string, seq int64) int {
		if d == "d" && seq == 1 {
			return http.StatusInternalServerError
		}
		return 0
	})
	h.startAgent("a1", func(o *ConsumerOptions) { o.MaxAttempts = 2 })
	waitFor(t, 2*time.Second, "agent registered", func() bool { return len(h.status().Agents) == 1 })
	h.produce(context.Background(), []string{"d"}, 3, 0)
	var st DeviceState
	waitFor(t, 10*time.Second, "several failed attempts", func() bool {
		st, _ = ReadDevice(context.Background(), client, h.keys, "d")
		return st.Attempts >= 5
	})
	if st.State != StateRetrying || st.Rejections != 0 || st.LastStatus != 500 {
		t.Fatalf("state %+v, want retrying without rejections", st)
	}
	h.dev.SetReject(nil)
	h.waitApplied(10 * time.Second)
	h.waitSettled(5 * time.Second)
	st, _ = ReadDevice(context.Background(), client, h.keys, "d")
	if st.State != StateOK {
		t.Fatalf("after recovery %+v", st)
	}
}

func jsonEq(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// gauge reads the single series of a gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series of %s", name)
	return 0
}
