package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/app"
	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/internal/redistest"
)

// TestOperatorCommands drives medic pause, resume, approve and reject
// against a bridge running in-process on a real Redis, and checks what they
// print, their exit codes and the pauses and decisions they leave in Redis.
func TestOperatorCommands(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte("runbook \"r\" {\n  match { alertname = \"X\" }\n}\n"), 0o644)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
	wrongToken := filepath.Join(dir, "wrong")
	os.WriteFile(wrongToken, []byte("nope\n"), 0o600)

	url := startBridge(t, dir, rs.URL(), tokenFile)
	ctl := controls.New(rs.Client(), "")
	pauses := func() []controls.Pause {
		ps, err := ctl.Pauses(context.Background(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}

	for _, id := range []string{"run-1", "run-2"} {
		if err := ctl.Request(context.Background(), id, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	bridge := "--bridge.url=" + url
	token := "--bridge.token-file=" + tokenFile
	for _, tc := range []struct {
		args             []string
		code             int
		stdout, stderr   string
		pausedAfterwards int
	}{
		{[]string{"pause", bridge}, 1, "", "the bridge wants credentials (401): set --bridge.token-file", 0},
		{[]string{"pause", bridge, "--bridge.token-file=" + wrongToken}, 1, "", "the bridge refused the token in " + wrongToken + " (401)", 0},
		{[]string{"pause", bridge, token, "--runbook=rr"}, 1, "", `the bridge refused (400): runbook "rr" is not configured; configured: r`, 0},
		{[]string{"pause", bridge, token, "--for=soon"}, 1, "", `for: "soon" is not a duration`, 0},
		{[]string{"pause", "--bridge.url=http://127.0.0.1:1", token}, 1, "", "cannot reach the bridge at http://127.0.0.1:1", 0},
		{[]string{"pause", "--bridge.url=127.0.0.1:9095", token}, 1, "", "--bridge.url \"127.0.0.1:9095\": want http://HOST:PORT", 0},
		{[]string{"pause", bridge, token, "--runbook=r", "--for=1h", "--reason=deploy freeze", "--by=alice"}, 0,
			"(by alice): deploy freeze\nlift it with: medic resume --runbook=r\n", "", 1},
		{[]string{"pause", bridge, token, "--by=bob"}, 0, "paused every runbook, until resumed (by bob)\nlift it with: medic resume\n", "", 2},
		{[]string{"resume", bridge, token}, 0, "resumed every runbook\nstill paused: runbook \"r\", until 20", "", 1},
		{[]string{"resume", bridge, token}, 1, "still paused: runbook \"r\"", "every runbook was not paused; nothing was resumed", 1},
		{[]string{"resume", bridge, token, "--runbook=r"}, 0, "resumed runbook \"r\"\nnothing is paused now\n", "", 0},
		{[]string{"approve", bridge, token, "run-1", "--reason=go", "--by=alice"}, 0, "approved run run-1 (by alice)\n", "", 0},
		{[]string{"reject", bridge, token, "run-1"}, 1, "", "run \"run-1\" was already approved by alice at 20", 0},
		{[]string{"reject", bridge, token, "run-2", "--by=bob"}, 0, "rejected run run-2 (by bob)\n", "", 0},
		{[]string{"approve", bridge, token, "run-3"}, 1, "", "run \"run-3\" is not waiting for approval", 0},
		{[]string{"approve", bridge, "run-3"}, 1, "", "the bridge wants credentials (401)", 0},
	} {
		t.Run(strings.Join(tc.args[2:], " "), func(t *testing.T) {
			code, stdout, stderr := withStdio(t, "", func() int { return runMain(tc.args) })
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("medic %s: exit %d\nstdout: %s\nstderr: %s\nwant exit %d, stdout with %q, stderr with %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
			if got := pauses(); len(got) != tc.pausedAfterwards {
				t.Errorf("pauses afterwards: %+v, want %d", got, tc.pausedAfterwards)
			}
		})
	}
	for id, want := range map[string]string{"run-1": "true alice go", "run-2": "false bob "} {
		d, err := ctl.Decision(context.Background(), id)
		if err != nil || d == nil || fmt.Sprint(d.Approve, " ", d.By, " ", d.Reason) != want {
			t.Errorf("decision on %s: %+v %v, want %s", id, d, err, want)
		}
	}
}

// startBridge runs the bridge of `medic bridge` in-process on dir's
// configuration, redisURL and the token in tokenFile, on a free loopback
// port, until the test ends; it returns the bridge's URL.
func startBridge(t *testing.T, dir, redisURL, tokenFile string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan []string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(ctx, app.Options{
			ConfigFile: dir, RedisURL: redisURL, ListenAddresses: []string{"127.0.0.1:0"}, TokenFile: tokenFile,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnListening: func(a []string) { addrs <- a },
		})
	}()
	t.Cleanup(func() { cancel(); <-errc })
	select {
	case a := <-addrs:
		return "http://" + a[0]
	case err := <-errc:
		errc <- err // for the cleanup
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("bridge did not start")
	}
	return ""
}
