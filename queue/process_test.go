package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/queue/devicetest"
)

// child is an agent running as a real process (this test binary re-executed).
type child struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	err    error
}

func (h *harness) startChild(addr, id, at string) *child {
	h.t.Helper()
	return h.startChildOpts(addr, id, at, "20ms")
}

func (h *harness) startChildHB(addr, id, hb string) *child {
	h.t.Helper()
	return h.startChildOpts(addr, id, "", hb)
}

func (h *harness) startChildOpts(addr, id, at, hb string) *child {
	h.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"MEDIC_QUEUE_TEST_AGENT=1", "AGENT_REDIS="+addr, "AGENT_POOL="+h.pool, "AGENT_ID="+id,
		"AGENT_DEVICE_BASE="+h.dev.URL()+"/devices/", "AGENT_HB="+hb, "AGENT_AT="+at)
	c := &child{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = &syncWriter{w: c.stderr}
	cmd.SysProcAttr = procsig.ChildAttr()
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	h.t.Cleanup(func() {
		_ = procsig.CmdGroup(cmd, syscall.SIGCONT)
		_ = procsig.CmdGroup(cmd, syscall.SIGKILL)
		<-c.done
	})
	return c
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// killedBySIGKILL reports whether the child died of SIGKILL.
func (c *child) killedBySIGKILL() bool {
	var ee *exec.ExitError
	if !errors.As(c.err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// stopped reports whether the process is in the stopped state.
func (c *child) stopped() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'T'
}

// TestAgentSIGKILL kills the active agent process at three points of the
// protocol while producers keep publishing; the standby takes over and the
// devices end up with every config exactly once, in order.
func TestAgentSIGKILL(t *testing.T) {
	srv, client := standalone(t, false)
	tests := []struct {
		name, at   string
		wantReplay bool // the killed push must be replayed by the new agent
	}{
		{"before-push", "before-push:40", false},
		{"mid-batch", "after-ack:30", false},
		{"after-device-reply-before-ack", "after-reply:35", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, client, "", "kill-"+tc.name)
			a1 := h.startChild(srv.Addr(), "a1", tc.at)
			waitFor(t, 5*time.Second, "a1 registered", func() bool { return len(h.status().Agents) == 1 })
			devices := []string{"d1", "d2", "d3", "d4"}
			// a1 becomes active with the first publish.
			h.produce(context.Background(), devices, 4, 0)
			h.startChild(srv.Addr(), "a2", "")
			h.startCoordinator(nil)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); h.produce(ctx, devices, 300, 300*time.Microsecond) }()
			select {
			case <-a1.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("a1 did not reach %s", tc.at)
			}
			if !a1.killedBySIGKILL() {
				t.Fatalf("a1 exited with %v, want SIGKILL; stderr:\n%s", a1.err, a1.stderr)
			}
			wg.Wait()
			cancel()
			h.waitApplied(15 * time.Second)
			st := h.waitSettled(5 * time.Second)
			h.check()
			if st.Agent != "a2" || st.Switchovers != 1 {
				t.Errorf("agent %q after %d switchovers, want a2 after 1", st.Agent, st.Switchovers)
			}
			replays := 0
			for _, d := range devices {
				for _, ev := range h.dev.History(d) {
					if ev.Outcome == devicetest.Replay {
						replays++
						if ev.Agent != "a2" {
							t.Errorf("replay by %s, want a2", ev.Agent)
						}
					}
				}
			}
			if tc.wantReplay && replays == 0 {
				t.Errorf("no replay: the config applied before the kill was not re-pushed")
			}
			t.Logf("%s", strings.TrimSpace(a1.stderr.String()))
		})
	}
}

// TestAgentSIGSTOP freezes the active agent past its heartbeat — once
// from outside at an arbitrary moment (the test sends SIGSTOP; a device
// delays its answers so pushes are in flight), once by the agent itself
// right after a fence check passed — lets the coordinator switch over and
// the new agent deliver to every device, then SIGCONTs it. Whatever it
// held in flight must be rejected as stale (or cancelled), it must send at
// most that, and nothing it sends is applied.
func TestAgentSIGSTOP(t *testing.T) {
	srv, client := standalone(t, false)
	tests := []struct {
		name, at string
		delay    time.Duration
	}{
		{"external", "", 2 * time.Millisecond},
		{"after-fence-check", "stop-before-push:25", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, client, "", "stop-"+tc.name)
			h.dev.Delay = tc.delay
			a1 := h.startChild(srv.Addr(), "a1", tc.at)
			waitFor(t, 5*time.Second, "a1 registered", func() bool { return len(h.status().Agents) == 1 })
			devices := []string{"d1", "d2", "d3"}
			h.produce(context.Background(), devices, 3, 0)
			h.startChild(srv.Addr(), "a2", "")
			h.startCoordinator(nil)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); h.produce(ctx, devices, 150, time.Millisecond) }()
			if tc.at == "" {
				waitFor(t, 10*time.Second, "deliveries", func() bool { return h.dev.AppliedTotal() >= 30 })
				if err := procsig.Cmd(a1.cmd, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 10*time.Second, "a1 stopped", a1.stopped)
			applied := map[string]int64{}
			for _, d := range devices {
				applied[d] = h.dev.Applied(d)
			}
			waitFor(t, 10*time.Second, "switchover to a2", func() bool {
				st := h.status()
				return st.Agent == "a2" && !st.Lock
			})
			// Let a2 deliver to every device so each has seen the new epoch.
			waitFor(t, 10*time.Second, "a2 delivering to every device", func() bool {
				for _, d := range devices {
					if h.dev.Applied(d) <= applied[d] {
						return false
					}
				}
				return true
			})
			resumed := time.Now()
			if err := procsig.Cmd(a1.cmd, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			h.waitApplied(15 * time.Second)
			h.waitSettled(5 * time.Second)
			time.Sleep(200 * time.Millisecond) // give a1 time to do anything stale
			h.check()
			// A held push either reaches its device, which rejects the old
			// epoch, or is cancelled first by the agent noticing it was
			// replaced; a1 may send nothing else.
			for _, d := range devices {
				var after []devicetest.Event
				for _, ev := range h.dev.History(d) {
					if ev.Agent == "a1" && !ev.At.Before(resumed) {
						after = append(after, ev)
					}
				}
				if len(after) > 1 || len(after) == 1 && after[0].Outcome != devicetest.Stale {
					t.Errorf("%s: a1 after SIGCONT sent %+v; want at most its one held push, rejected as stale", d, after)
				}
				if len(after) > 0 {
					t.Logf("%s: a1 after SIGCONT: seq %d epoch %d %s", d, after[0].Seq, after[0].Epoch, after[0].Outcome)
				}
			}
			select {
			case <-a1.done:
				t.Errorf("a1 exited after SIGCONT: %v\n%s", a1.err, a1.stderr)
			default:
			}
		})
	}
}
