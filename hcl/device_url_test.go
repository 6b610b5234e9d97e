package hcl

import (
	"strings"
	"testing"
)

func TestEscapeDevice(t *testing.T) {
	for in, want := range map[string]string{
		"sw-01":              "sw-01",
		"127.0.0.1:18080/x#": "127.0.0.1%3A18080%2Fx%23",
		"../../admin?x=1#":   "..%2F..%2Fadmin%3Fx%3D1%23",
		"..":                 "%2E%2E",
		".":                  "%2E",
		"a@b&c=d e":          "a%40b%26c%3Dd%20e",
		"ü":                  "%C3%BC",
	} {
		if got := EscapeDevice(in); got != want {
			t.Errorf("EscapeDevice(%q) = %q, want %q", in, got, want)
		}
	}
}

// Where device_url puts the device decides what a device ID may be; a
// template that puts it in the user info is refused at load, with its
// position.
func TestDeviceURLPosition(t *testing.T) {
	load := func(tmpl string) (*Pool, string) {
		src := "agent \"a\" {\n  node = \"n\"\n  command = [\"x\"]\n}\npool \"p\" {\n  agents = [\"a\"]\n  device_url = " + tmpl + "\n}\n"
		cfg, diags := LoadSources([]Source{{Name: "pools.hcl", Bytes: []byte(src)}})
		if diags.HasErrors() {
			return nil, diags.Error()
		}
		return cfg.Pool("p"), ""
	}
	for _, tc := range []struct {
		tmpl    string
		inHost  bool
		wantErr string
	}{
		{`"http://${device}.switches.example/api/config"`, true, ""},
		{`"http://${upper(device)}:8080/api"`, true, ""},
		{`"http://${substr(device, 0, 4)}.switches.example/api"`, true, ""},
		{`"http://switches.example/dev/${device}/config"`, false, ""},
		{`"http://switches.example/api?d=${device}"`, false, ""},
		{`"http://${device}@switches.example/api"`, false, "pools.hcl:7,16-55: Invalid device_url"},
	} {
		p, err := load(tc.tmpl)
		if tc.wantErr != "" {
			if !strings.Contains(err, tc.wantErr) {
				t.Errorf("%s: error %q, want %q", tc.tmpl, err, tc.wantErr)
			}
			continue
		}
		if err != "" {
			t.Errorf("%s: %s", tc.tmpl, err)
			continue
		}
		if p.DeviceInHost() != tc.inHost {
			t.Errorf("%s: DeviceInHost = %v, want %v", tc.tmpl, p.DeviceInHost(), tc.inHost)
		}
		u, e := p.DeviceURLFor("127.0.0.1:18080/x#")
		if tc.inHost && e == nil {
			t.Errorf("%s: hostile ID rendered %q, want refused", tc.tmpl, u)
		}
		if !tc.inHost && (e != nil || strings.Contains(u, "/x#") || strings.Contains(u, "18080/")) {
			t.Errorf("%s: hostile ID rendered %q %v, want it escaped", tc.tmpl, u, e)
		}
		if u, e := p.DeviceURLFor("sw-01"); e != nil || !strings.Contains(strings.ToLower(u), "sw-0") {
			t.Errorf("%s: sw-01 → %q %v", tc.tmpl, u, e)
		}
	}
}
