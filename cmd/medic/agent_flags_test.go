package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentStartupErrors: `medic agent` refuses a device URL it could never
// deliver to and a bad web config before it starts, naming the flag.
func TestAgentStartupErrors(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(broken, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yml")
	tests := []struct {
		name string
		o    agentOptions
		want string
	}{
		{"ftp device URL", agentOptions{DeviceURL: "ftp://${device}.example/cfg"}, `--device.url "ftp://${device}.example/cfg": want an http:// or https:// URL with a host`},
		{"no scheme", agentOptions{DeviceURL: "${device}.example/cfg"}, `--device.url "${device}.example/cfg": want an http:// or https:// URL`},
		{"no host", agentOptions{DeviceURL: "http:///cfg/${device}"}, "want an http:// or https:// URL with a host"},
		{"web config missing", agentOptions{DeviceURL: "http://${device}.example/cfg", Listen: "127.0.0.1:0", WebConfigFile: missing},
			"--web.config.file " + missing + ": open " + missing},
		{"web config broken", agentOptions{DeviceURL: "http://${device}.example/cfg", Listen: "127.0.0.1:0", WebConfigFile: broken},
			"--web.config.file " + broken + ": missing one of key or key_file"},
		{"web config without listen", agentOptions{DeviceURL: "http://${device}.example/cfg", WebConfigFile: broken},
			"--web.config.file needs --web.listen-address"},
		{"pprof without listen", agentOptions{DeviceURL: "http://${device}.example/cfg", EnablePprof: true},
			"--web.enable-pprof needs --web.listen-address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.RedisURL, o.Prefix, o.Pool, o.ID, o.RequestTimeout = "redis://127.0.0.1:1", "medic:", "sw", "a1", time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := runAgent(ctx, slog.New(slog.DiscardHandler), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("runAgent = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
