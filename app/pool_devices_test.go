package app

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/queue"
)

// The device endpoints need the token like the other pool reads and
// writes; a JSON body sent as `curl -d` sends it (a form's Content-Type)
// reaches them as JSON, and a status page form as a form.
func TestPoolDeviceEndpointsAuthAndBodies(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(`agent "cfg-1" {
  command = ["/bin/true"]
}
pool "switches" {
  agents     = ["cfg-1"]
  device_url = "http://127.0.0.1:1/${device}"
}
`), 0o644)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
	r := start(t, Options{ConfigFile: dir, RedisURL: rs.URL(), ListenAddresses: []string{"127.0.0.1:0"}, TokenFile: tokenFile})
	pub := queue.NewPublisher(queue.PublisherOptions{Client: rs.Client()})
	if _, err := pub.Publish(context.Background(), "switches", "sw-1", []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/api/v1/pools/switches/devices/sw-1", "", 401},
		{"GET", "/api/v1/pools/switches/devices/sw-1", "tok", 200},
		{"GET", "/api/v1/pools/switches/devices?state=blocked", "", 401},
		{"GET", "/api/v1/pools/switches/devices?state=blocked", "tok", 200},
		{"GET", "/api/v1/pools/switches/devices?state=stuck", "tok", 400},
		{"GET", "/api/v1/pools/switches/devices?state=blocked&limt=5", "tok", 400},
		{"GET", "/api/v1/pools/switches/dead-letters", "", 401},
		{"GET", "/api/v1/pools/switches/dead-letters", "tok", 200},
		{"GET", "/api/v1/pools/switches/dead-letters?after=nonsense", "tok", 400},
		{"POST", "/api/v1/pools/switches/devices/sw-1/skip", "", 401},
		{"POST", "/api/v1/pools/switches/devices/sw-1/retry", "", 401},
	} {
		if code, body := httpDo(t, tc.method, r.base+tc.path, tc.token, `{"reason":"x"}`); code != tc.code {
			t.Errorf("%s %s with token %q = %d, want %d: %.200s", tc.method, tc.path, tc.token, code, tc.code, body)
		}
	}
	post := func(ctype, body string) (int, string) {
		req, _ := http.NewRequest("POST", r.base+"/api/v1/pools/switches/devices/sw-1/skip", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("Content-Type", ctype)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		sb.Write(buf[:n])
		return resp.StatusCode, sb.String()
	}
	// The device is ok: 409 either way, proving the body was read (a body
	// without a reason would be 400).
	if code, body := post("application/x-www-form-urlencoded", `{"by":"ann","reason":"r"}`); code != 409 || !strings.Contains(body, `"error"`) {
		t.Errorf("JSON with a form Content-Type: %d %s", code, body)
	}
	if code, body := post("application/x-www-form-urlencoded", `by=ann`); code != 400 || !strings.Contains(body, "reason is required") {
		t.Errorf("form without reason: %d %s", code, body)
	}
	if code, body := post("application/x-www-form-urlencoded", `by=ann&reason=r`); code != 409 || !strings.HasPrefix(body, "medic: ") {
		t.Errorf("form: %d %s", code, body)
	}
}
