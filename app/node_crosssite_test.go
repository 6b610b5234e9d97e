package app

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A web page that a browser on the node's host opens cannot write to the
// node: a cross-site heartbeat (the text/plain POST that set a
// timeout of 1 ms, and its PUT form), unregister and reload are refused;
// POST is no heartbeat method at all; curl, which sends no Origin, passes.
func TestNodeRefusesCrossSiteWrites(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "node.hcl")
	if err := os.WriteFile(cfgFile, []byte("agent \"api\" {\n  pidfile = \"/nonexistent/api.pid\"\n  start   = [\"true\"]\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startNodeApp(t, NodeOptions{ConfigFile: cfgFile, NodeName: "n1", RuntimeDir: filepath.Join(dir, "run")})
	defer r.stop()
	send := func(method, path, body string, hdr map[string]string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, r.base+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(bytes.Buffer)
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, resp.Header, b.String()
	}
	evil := map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/heartbeats/api", `{"timeout":"1ms"}`},
		{"DELETE", "/api/v1/heartbeats/api", ""},
		{"POST", "/-/reload", ""},
	} {
		if code, _, body := send(c.method, c.path, c.body, evil); code != http.StatusForbidden {
			t.Errorf("cross-site %s %s = %d %s, want 403", c.method, c.path, code, body)
		}
	}
	// Only an Origin (older browsers): refused too.
	if code, _, body := send("PUT", "/api/v1/heartbeats/api", `{"timeout":"1ms"}`, map[string]string{"Origin": "http://evil.example"}); code != http.StatusForbidden {
		t.Errorf("PUT with a foreign Origin = %d %s, want 403", code, body)
	}
	if _, _, body := send("GET", "/api/v1/agents", "", nil); !strings.Contains(body, `"heartbeat_registered":false`) {
		t.Errorf("after the cross-site requests: %s, want no heartbeat registered", body)
	}
	code, hdr, body := send("POST", "/api/v1/heartbeats/api", `{"timeout":"15s"}`, nil)
	if code != http.StatusMethodNotAllowed || !strings.Contains(hdr.Get("Allow"), "PUT") {
		t.Errorf("POST heartbeat = %d (Allow %q) %s, want 405 allowing PUT", code, hdr.Get("Allow"), body)
	}
	if code, _, body := send("PUT", "/api/v1/heartbeats/api", `{"timeout":"15s"}`, nil); code != 200 {
		t.Errorf("curl's PUT heartbeat = %d %s, want 200", code, body)
	}
	if _, _, body := send("GET", "/api/v1/agents", "", nil); !strings.Contains(body, `"heartbeat_registered":true`) {
		t.Errorf("after curl's PUT: %s, want the heartbeat registered", body)
	}
	if code, _, body := send("POST", "/-/reload", "", map[string]string{"Sec-Fetch-Site": "same-origin"}); code != 200 {
		t.Errorf("same-origin reload = %d %s, want 200", code, body)
	}
}
