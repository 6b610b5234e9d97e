package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/queue"
)

// TestDemoSwitchover does what the demo's instructions say of its pool,
// through the URLs they print: configs published are applied by the demo
// device in order; killing the active agent with its printed /die makes the
// coordinator switch the pool to the other agent; configs published during
// and after the switch are applied too — none lost, none reordered, none
// applied twice, none refused by the device.
func TestDemoSwitchover(t *testing.T) {
	base, text, stop := startDemo(t)
	pool := base + "/api/v1/pools/" + DemoPool
	device := base + "/demo/devices/sw-01"
	for _, want := range []string{
		"curl -s -XPOST " + pool + "/configs",
		"curl -s " + pool + "\n",
		"curl -s " + device + "\n",
		"curl -s -XPOST " + pool + "/switchover",
		"status page   " + base + "/",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("instructions lack %q:\n%s", want, text)
		}
	}
	// Each config agent's kill command, as printed.
	die := map[string]string{}
	for _, a := range []string{"demo-cfg-1", "demo-cfg-2"} {
		m := regexp.MustCompile(regexp.QuoteMeta(a) + ` on (127\.0\.0\.1:\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("instructions do not say where %s listens:\n%s", a, text)
		}
		die[a] = "http://" + m[1] + "/die"
		if !strings.Contains(text, "curl -s "+die[a]+"\n") {
			t.Errorf("instructions lack the kill command of %s (curl -s %s)", a, die[a])
		}
	}

	status := func() queue.Status {
		t.Helper()
		var st queue.Status
		code, body := httpDo(t, "GET", pool, "", "")
		if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
			t.Fatalf("pool status: %d %s", code, body)
		}
		return st
	}
	waitPool := func(what string, ok func(queue.Status) bool) queue.Status {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := status()
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: pool %+v", what, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	applied := func() demoDeviceState {
		t.Helper()
		var st demoDeviceState
		code, body := httpDo(t, "GET", device, "", "")
		if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
			t.Fatalf("demo device: %d %s (%v)", code, body, err)
		}
		return st
	}
	waitApplied := func(n int) demoDeviceState {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := applied()
			if st.LastSeq >= int64(n) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %d configs applied: device %s, pool %+v", n, appliedSummary(st), status())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var published []string // payloads, seq 1 first
	publish := func(n int) {
		t.Helper()
		for range n {
			payload := fmt.Sprintf(`{"vlan":%d}`, len(published)+1)
			code, body := httpDo(t, "POST", pool+"/configs", "", `{"device":"sw-01","payload":`+payload+`}`)
			var res struct{ Seq int64 }
			json.Unmarshal([]byte(body), &res)
			if code != http.StatusCreated || res.Seq != int64(len(published)+1) {
				t.Fatalf("publish %s: %d %s, want 201 with seq %d", payload, code, body, len(published)+1)
			}
			published = append(published, payload)
		}
	}

	waitPool("both config agents healthy", func(st queue.Status) bool {
		n := 0
		for _, a := range st.Agents {
			if a.Healthy {
				n++
			}
		}
		return n == 2
	})
	publish(5)
	before := waitApplied(5)
	// The first publish makes the pool's first agent active, as the
	// instructions say; it is the one they kill.
	if a := before.Applied[0]; a.Agent != "demo-cfg-1" || a.Epoch != 1 {
		t.Errorf("seq 1 applied by %s in epoch %d, want demo-cfg-1 in epoch 1", a.Agent, a.Epoch)
	}

	// Kill the active agent (whichever it is by now: a loaded machine may
	// have switched already) and publish at once, while the pool switches.
	st := status()
	victim, epoch, switchovers := st.Agent, st.Epoch, st.Switchovers
	if die[victim] == "" {
		t.Fatalf("active agent %q is not a demo config agent", victim)
	}
	if resp, err := http.Get(die[victim]); err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s answered %s; want the agent to die without answering", die[victim], resp.Status)
	}
	publish(5)
	after := waitPool("the switchover away from "+victim, func(st queue.Status) bool {
		return st.Agent != victim && st.Agent != "" && !st.Lock && st.Epoch > epoch
	})
	if after.Switchovers != switchovers+1 || after.Previous != victim {
		t.Errorf("after the kill: pool %+v, want one switchover more (%d) from %s", after, switchovers+1, victim)
	}
	publish(5)
	dev := waitApplied(len(published))
	waitPool("backlog and buffer drained", func(st queue.Status) bool { return st.Backlog == 0 && st.Buffer == 0 })

	// Every config once, in seq order, with its payload; epochs never go
	// back; what was published after the switchover came from the new agent.
	if dev.LastSeq != int64(len(published)) || len(dev.Applied) != len(published) {
		t.Fatalf("device applied up to seq %d, %d configs; want %d: %s", dev.LastSeq, len(dev.Applied), len(published), appliedSummary(dev))
	}
	var lastEpoch int64
	for i, a := range dev.Applied {
		if a.Seq != int64(i+1) || string(a.Payload) != published[i] {
			t.Errorf("applied #%d: seq %d payload %s, want seq %d payload %s", i+1, a.Seq, a.Payload, i+1, published[i])
		}
		if a.Epoch < lastEpoch {
			t.Errorf("seq %d applied in epoch %d after epoch %d", a.Seq, a.Epoch, lastEpoch)
		}
		lastEpoch = a.Epoch
		if i >= 10 && (a.Agent != after.Agent || a.Epoch != after.Epoch) {
			t.Errorf("seq %d (published after the switchover) applied by %s in epoch %d, want %s in epoch %d", a.Seq, a.Agent, a.Epoch, after.Agent, after.Epoch)
		}
	}
	if len(dev.Refused) != 0 {
		t.Errorf("the device refused pushes: %v", dev.Refused)
	}

	// The kill was real: the node sees the agent down, and it stays down
	// (its watchdog is off, so that the switchover is what the demo shows).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ag struct {
			Agents []struct {
				Name string `json:"name"`
				Up   bool   `json:"up"`
			}
		}
		_, body := httpDo(t, "GET", base+"/api/v1/agents", "", "")
		json.Unmarshal([]byte(body), &ag)
		down := false
		for _, a := range ag.Agents {
			down = down || a.Name == victim && !a.Up
		}
		if down {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still up after its /die: %s", victim, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("RunDemo returned %v", err)
	}
}

// appliedSummary is SEQ:AGENT@EPOCH for each applied config, and the
// refusals.
func appliedSummary(st demoDeviceState) string {
	var b strings.Builder
	for _, a := range st.Applied {
		fmt.Fprintf(&b, "%d:%s@%d ", a.Seq, a.Agent, a.Epoch)
	}
	fmt.Fprintf(&b, "refused %v replays %d", st.Refused, st.Replays)
	return b.String()
}
