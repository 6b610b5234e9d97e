package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/queue"
)

// TestDeviceCommands drives medic device show, skip and retry against a
// bridge running in-process on a real Redis, with an in-process agent
// whose device rejects everything (max_attempts 1), and checks what they
// print, their exit codes and the dead letter a skip leaves.
func TestDeviceCommands(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dev := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusBadRequest) }))
	defer dev.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte(`agent "a1" {
  command = ["/bin/true"]
}
pool "p" {
  agents       = ["a1"]
  max_attempts = 1
  device_url   = "`+dev.URL+`/${device}"
}
`), 0o644)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)

	url := startBridge(t, dir, rs.URL(), tokenFile)

	client := rs.Client()
	c, err := queue.NewConsumer(queue.ConsumerOptions{Client: client, Pool: "p", Agent: "a1", MaxAttempts: 1,
		DeviceURL: func(d string) (string, error) { return dev.URL + "/" + d, nil }})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() { defer close(adone); c.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })
	pub := queue.NewPublisher(queue.PublisherOptions{Client: client})
	for range 2 {
		if _, err := pub.Publish(context.Background(), "p", "sw-1", []byte(`{"vlan":3}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	k, _ := queue.NewKeys("", "p")
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _ := queue.ReadDevice(context.Background(), client, k, "sw-1")
		if st.State == queue.StateBlocked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sw-1 not blocked: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	bridge := "--bridge.url=" + url
	token := "--bridge.token-file=" + tokenFile
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"device", bridge, token, "show", "p", "sw-1"}, 0, "p/sw-1: blocked, applied seq 0, next 1, 2 pending; 1 failed attempts, last answer 400 HTTP 400 Bad Request since 20", ""},
		{[]string{"device", bridge, token, "skip", "p", "sw-1"}, 1, "", "--reason is required"},
		{[]string{"device", bridge, "skip", "p", "sw-1", "--reason=x"}, 1, "", "the bridge wants credentials (401)"},
		{[]string{"device", bridge, token, "retry", "p", "nope", "--reason=x"}, 1, "", `unknown device "nope" in pool p`},
		{[]string{"device", bridge, token, "skip", "q", "sw-1", "--reason=x"}, 1, "", "unknown pool q"},
		{[]string{"device", bridge, token, "skip", "p", "sw-1", "--reason=bad vlan", "--by=alice"}, 0, "skipped config 1 of p/sw-1 (by alice): dead letter ", ""},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			code, stdout, stderr := withStdio(t, "", func() int { return runMain(tc.args) })
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("medic %s: exit %d\nstdout: %s\nstderr: %s\nwant exit %d, stdout with %q, stderr with %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
	page, err := queue.ListDeadLetters(context.Background(), client, k, "", 10)
	if err != nil || page.Total != 1 || page.DeadLetters[0].By != "alice" || page.DeadLetters[0].Reason != "bad vlan" || string(page.DeadLetters[0].Payload) != `{"vlan":3}` {
		t.Fatalf("dead letters %+v %v", page, err)
	}
	// Seq 2 is rejected too; the device is blocked again, on 2; retry
	// unblocks it (and it is blocked once more, the device still says no).
	deadline = time.Now().Add(20 * time.Second)
	for {
		st, _ := queue.ReadDevice(context.Background(), client, k, "sw-1")
		if st.State == queue.StateBlocked && st.NextSeq == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sw-1 not blocked on 2: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, stdout, stderr := withStdio(t, "", func() int {
		return runMain([]string{"device", bridge, token, "retry", "p", "sw-1", "--reason=try again", "--by=bob"})
	})
	if code != 0 || !strings.Contains(stdout, "unblocked p/sw-1 (by bob): config 2 is pushed again now") {
		t.Fatalf("retry: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
