package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// client is shared by every helper; no test request may hang forever.
var client = &http.Client{Timeout: 10 * time.Second}

// WaitHTTP polls url until it answers 200 or the timeout passes; then the
// test fails with the last error and the tail of proc's log (proc may be nil).
func WaitHTTP(t testing.TB, url string, timeout time.Duration, proc *Proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if proc != nil {
			if exited, err := proc.Exited(); exited {
				t.Fatalf("%s exited while waiting for %s (%v):\n%s", proc.Name, url, err, proc.Tail(8<<10))
			}
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s not ready after %s: %s", url, timeout, last)
			if proc != nil {
				msg += "\n" + proc.Tail(8<<10)
			}
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Do sends a request and returns the status and body (capped at 16 MiB).
func Do(ctx context.Context, method, url string, header http.Header, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, b, err
}

// GetJSON GETs url and decodes a 200 answer into v.
func GetJSON(ctx context.Context, url string, v any) error { return getJSON(ctx, url, url, nil, v) }

// getJSON GETs url with header h and decodes a 200 answer into v; errors
// name the URL as label.
func getJSON(ctx context.Context, url, label string, h http.Header, v any) error {
	code, b, err := Do(ctx, http.MethodGet, url, h, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d: %.300s", label, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w: %.300s", label, err, b)
	}
	return nil
}

// Eventually polls cond every interval until it returns true or timeout
// passes; then the test fails with the last description cond gave.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s; last: %s", what, timeout, desc)
		}
		time.Sleep(interval)
	}
}

// AgentPID asks the test agent serving at base (http://HOST:PORT) for its
// pid.
func AgentPID(base string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	code, b, err := Do(ctx, http.MethodGet, base+"/pid", nil, nil)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /pid: %d", code)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
