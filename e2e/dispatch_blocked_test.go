package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/queue"
	"github.com/medicops/medic/queue/devicetest"
)

// TestDispatchBlockedDevice is issue 18's show case, on real processes (a
// redis-server, `medic bridge`, `medic agent`) and a strict loopback
// device: one device rejects one config with 400; after max_attempts it
// is blocked while the other devices finish; the metric and the API agree;
// a skip by a named operator (`medic device skip`) moves the config to the
// dead letters and lets the next one through, in order; a device that
// rejects again is blocked again, and a retry (curl -d style, JSON with a
// form's Content-Type) after the device is fixed delivers it. The strict
// device's history shows every other config applied exactly once, in
// order, and the skipped one never.
func TestDispatchBlockedDevice(t *testing.T) {
	const maxAttempts = 3
	const perDevice = 6
	rs := redistest.Start(t, redistest.Options{})
	dev := devicetest.New()
	t.Cleanup(dev.Close)
	reject := func(seqs ...int64) func(string, int64) int {
		return func(d string, seq int64) int {
			for _, s := range seqs {
				if d == "sw-bad" && seq == s {
					return http.StatusBadRequest
				}
			}
			return 0
		}
	}
	dev.SetReject(reject(3, 5))

	dir := t.TempDir()
	cfg := fmt.Sprintf(`agent "cfg-a1" {
  node    = "cfg-01"
  command = ["/bin/true"]
}

pool "switches" {
  agents         = ["cfg-a1"]
  check_interval = "500ms"
  max_attempts   = %d
  device_url     = "%s"
}
`, maxAttempts, dev.Template())
	if err := os.WriteFile(filepath.Join(dir, "medic.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, tokenFile := harness.Token(t)
	b := harness.StartBridge(t, harness.BridgeOptions{Medic: bins.Medic, ConfigPath: dir, RedisURL: rs.URL(), TokenFile: tokenFile})
	harness.StartProc(t, "agent", []string{bins.Medic, "agent", "--config.file=" + dir, "--redis.url=" + rs.URL(),
		"--pool=switches", "--agent.id=cfg-a1", "--log.level=debug"}, harness.ProcOptions{})

	ctx := context.Background()
	api := func(method, path, ctype string, body []byte, v any) int {
		t.Helper()
		h := b.Auth()
		if ctype != "" {
			h.Set("Content-Type", ctype)
		}
		code, raw, err := harness.Do(ctx, method, b.URL+path, h, body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if v != nil && json.Unmarshal(raw, v) != nil {
			t.Fatalf("%s %s: %d %s", method, path, code, raw)
		}
		return code
	}
	device := func(d string) queue.DeviceState {
		t.Helper()
		var st queue.DeviceState
		if code := api("GET", "/api/v1/pools/switches/devices/"+d, "", nil, &st); code != 200 {
			t.Fatalf("GET device %s: %d", d, code)
		}
		return st
	}
	blockedMetric := func() float64 {
		t.Helper()
		code, raw, err := harness.Do(ctx, "GET", b.URL+"/metrics", nil, nil)
		if err != nil || code != 200 {
			t.Fatalf("metrics: %d %v", code, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), `medic_dispatch_devices{pool="switches",state="blocked"} `); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatal("no medic_dispatch_devices{pool=\"switches\",state=\"blocked\"} on /metrics")
		return 0
	}

	// Publish through the bridge API, the devices interleaved.
	devices := []string{"sw-bad", "sw-1", "sw-2"}
	published := map[string][]string{}
	for i := range perDevice {
		for _, d := range devices {
			payload := fmt.Sprintf(`{"device":%q,"change":%d}`, d, i+1)
			var res queue.Published
			if code := api("POST", "/api/v1/pools/switches/configs", "application/json",
				[]byte(fmt.Sprintf(`{"device":%q,"payload":%s}`, d, payload)), &res); code != 201 || res.Seq != int64(i+1) {
				t.Fatalf("publish %s #%d: %d %+v", d, i+1, code, res)
			}
			published[d] = append(published[d], payload)
		}
	}

	harness.Eventually(t, 60*time.Second, 100*time.Millisecond, "sw-1 and sw-2 finish, sw-bad blocked", func() (bool, string) {
		st := device("sw-bad")
		return dev.Applied("sw-1") == perDevice && dev.Applied("sw-2") == perDevice && st.State == queue.StateBlocked,
			fmt.Sprintf("sw-1 %d, sw-2 %d applied; sw-bad %+v", dev.Applied("sw-1"), dev.Applied("sw-2"), st)
	})
	st := device("sw-bad")
	if st.AppliedSeq != 2 || st.NextSeq != 3 || st.Pending != perDevice-2 || st.Attempts != maxAttempts || st.LastStatus != 400 {
		t.Fatalf("sw-bad blocked with state %+v", st)
	}
	if dev.Applied("sw-bad") != 2 {
		t.Fatalf("sw-bad applied %d, want 2 (held on 3)", dev.Applied("sw-bad"))
	}
	var page queue.DevicePage
	if code := api("GET", "/api/v1/pools/switches/devices?state=blocked", "", nil, &page); code != 200 || page.Total != 1 || page.Devices[0].Device != "sw-bad" {
		t.Fatalf("blocked list: %d %+v", code, page)
	}
	if m := blockedMetric(); m != 1 {
		t.Fatalf("medic_dispatch_devices{state=blocked} = %v, API says 1", m)
	}
	// The status page lists it with its buttons.
	if code, page, err := harness.Do(ctx, "GET", b.URL+"/?refresh=0", b.Auth(), nil); err != nil || code != 200 ||
		!strings.Contains(string(page), `data-device="sw-bad"`) || !strings.Contains(string(page), `action="/api/v1/pools/switches/devices/sw-bad/retry"`) {
		t.Fatalf("status page: %d %v; want sw-bad among the blocked devices:\n%.3000s", code, err, page)
	}

	// An operator skips seq 3 with the CLI; the device is told it will
	// never get it. Seq 4 goes through; seq 5 is rejected as well.
	dev.Skip("sw-bad", 3)
	out, err := exec.Command(bins.Medic, "device", "skip", "switches", "sw-bad", "--reason=vlan 3 was retired",
		"--by=alice", "--bridge.url="+b.URL, "--bridge.token-file="+tokenFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "skipped config 3 of switches/sw-bad (by alice)") {
		t.Fatalf("medic device skip: %v\n%s", err, out)
	}
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "sw-bad blocked again on 5", func() (bool, string) {
		st := device("sw-bad")
		return st.State == queue.StateBlocked && st.NextSeq == 5, fmt.Sprintf("%+v", st)
	})
	if got := dev.Applied("sw-bad"); got != 4 {
		t.Fatalf("sw-bad at %d, want 4 (3 skipped, 4 applied)", got)
	}
	var dl queue.DeadLetterPage
	if code := api("GET", "/api/v1/pools/switches/dead-letters", "", nil, &dl); code != 200 || dl.Total != 1 {
		t.Fatalf("dead letters: %d %+v", code, dl)
	}
	if d := dl.DeadLetters[0]; d.Device != "sw-bad" || d.Seq != 3 || d.By != "alice" || d.Reason != "vlan 3 was retired" ||
		d.LastStatus != 400 || d.Attempts != maxAttempts || !jsonSame(string(d.Payload), published["sw-bad"][2]) {
		t.Fatalf("dead letter %+v, want seq 3 by alice with payload %s", d, published["sw-bad"][2])
	}

	// The device is fixed; a retry sent as `curl -d '{…}'` would send it
	// (a form's Content-Type) delivers seq 5 and the rest.
	dev.SetReject(nil)
	var res queue.ActionResult
	if code := api("POST", "/api/v1/pools/switches/devices/sw-bad/retry", "application/x-www-form-urlencoded",
		[]byte(`{"by":"bob","reason":"firmware fixed"}`), &res); code != 200 || res.Seq != 5 || res.By != "bob" {
		t.Fatalf("retry: %d %+v", code, res)
	}
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "sw-bad done", func() (bool, string) {
		st := device("sw-bad")
		return st.State == queue.StateOK && st.Pending == 0, fmt.Sprintf("%+v", st)
	})
	if bad := dev.Check(published); len(bad) > 0 {
		t.Fatalf("device guarantees violated:\n%s", strings.Join(bad, "\n"))
	}
	if m := blockedMetric(); m != 0 {
		t.Fatalf("medic_dispatch_devices{state=blocked} = %v after the retry, want 0", m)
	}
	// Every request sw-bad got: 1, 2, then 3 rejected max_attempts times,
	// never again; 4; 5 rejected, then applied; 6.
	var seqs []string
	for _, ev := range dev.History("sw-bad") {
		seqs = append(seqs, fmt.Sprintf("%d:%s", ev.Seq, ev.Outcome))
	}
	want := []string{"1:applied", "2:applied", "3:rejected", "3:rejected", "3:rejected", "4:applied",
		"5:rejected", "5:rejected", "5:rejected", "5:applied", "6:applied"}
	if strings.Join(seqs, " ") != strings.Join(want, " ") {
		t.Fatalf("sw-bad history\n got %v\nwant %v", seqs, want)
	}
}

func jsonSame(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
