package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBridgeWebConfigFile: a bad --web.config.file is reported with the
// flag and the file's name before anything starts, and a web config that
// authenticates nobody does not count as the webhook's authentication on a
// non-loopback address.
func TestBridgeWebConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.yml", "{}\n")
	broken := write("broken.yml", "basic_auth_users: [\n")
	typo := write("typo.yml", "basic_auth_user:\n  am: x\n")
	noKey := write("nokey.yml", "tls_server_config:\n  cert_file: /nonexistent.crt\n")
	nodeCfg := write("node.hcl", "agent \"ext\" {\n  pidfile = \"/nonexistent.pid\"\n  start = [\"true\"]\n}\n")
	missing := filepath.Join(dir, "missing.yml")

	tests := []struct {
		name       string
		webConfig  string
		listen     string
		wantStderr string
	}{
		{"missing file", missing, "127.0.0.1:0", "--web.config.file " + missing + ": open " + missing + ": no such file or directory"},
		{"YAML syntax error", broken, "127.0.0.1:0", "--web.config.file " + broken + ": yaml: "},
		{"unknown key", typo, "127.0.0.1:0", "--web.config.file " + typo + ": yaml: unmarshal errors"},
		{"TLS without a key", noKey, "127.0.0.1:0", "--web.config.file " + noKey + ": missing one of key or key_file"},
		{"authenticates nobody, all interfaces", empty, "0.0.0.0:0", "refusing to start: --web.config.file " + empty + " sets neither basic_auth_users"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"bridge", "--config.file=" + dir, "--redis.url=redis://127.0.0.1:1",
				"--web.listen-address=" + tc.listen, "--web.config.file=" + tc.webConfig}
			code, _, stderr := withStdio(t, "", func() int { return runMain(args) })
			if code != 1 || !strings.Contains(stderr, tc.wantStderr) || strings.Contains(stderr, "medic is up") {
				t.Errorf("medic %s: exit %d, stderr:\n%s\nwant exit 1 before start-up with %q", strings.Join(args, " "), code, stderr, tc.wantStderr)
			}
			if strings.HasPrefix(tc.wantStderr, "refusing") {
				return // a node only warns about that
			}
			// medic node checks the same file the same way, before start-up.
			args = []string{"node", "--config.file=" + nodeCfg, "--node.name=n1", "--node.runtime-dir=" + filepath.Join(dir, "run"),
				"--web.listen-address=" + tc.listen, "--web.config.file=" + tc.webConfig}
			code, _, stderr = withStdio(t, "", func() int { return runMain(args) })
			if code != 1 || !strings.Contains(stderr, tc.wantStderr) || strings.Contains(stderr, "is up") {
				t.Errorf("medic %s: exit %d, stderr:\n%s\nwant exit 1 before start-up with %q", strings.Join(args, " "), code, stderr, tc.wantStderr)
			}
		})
	}
}

// TestBridgeFlagValues: a zero or negative duration or count is refused
// with the flag's name instead of silently meaning the default.
func TestBridgeFlagValues(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ flag, want string }{
		{"--bridge.dedup-ttl=-5s", "--bridge.dedup-ttl must be a positive duration, not -5s"},
		{"--bridge.job-deadline=0s", "--bridge.job-deadline must be a positive duration, not 0s"},
		{"--bridge.node-silence=5s", "--bridge.node-silence must be 0 (off) or at least 15s (three state snapshots), not 5s"},
		{"--bridge.node-silence=-1m", "--bridge.node-silence must be 0 (off) or at least 15s (three state snapshots), not -1m0s"},
		{"--runs.retention=0s", "--runs.retention must be a positive duration, not 0s"},
		{"--runs.max=0", "--runs.max must be at least 1, not 0"},
		{"--bridge.max-body=0B", "--bridge.max-body must be positive, not 0"},
	}
	for _, tc := range tests {
		for _, cmd := range []string{"bridge", "serve"} {
			args := []string{cmd, "--config.file=" + dir, "--redis.url=redis://127.0.0.1:1", "--web.listen-address=127.0.0.1:0", tc.flag}
			code, _, stderr := withStdio(t, "", func() int { return runMain(args) })
			if code != 1 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "medic is up") {
				t.Errorf("medic %s: exit %d, stderr:\n%s\nwant exit 1 before start-up with %q", strings.Join(args, " "), code, stderr, tc.want)
			}
		}
	}
}

// --web.systemd-socket is refused by every long-running command, not
// accepted and ignored.
func TestSystemdSocketRefused(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range []string{"bridge", "serve", "node"} {
		args := []string{cmd, "--config.file=" + dir, "--redis.url=redis://127.0.0.1:1", "--web.listen-address=127.0.0.1:0", "--web.systemd-socket"}
		code, _, stderr := withStdio(t, "", func() int { return runMain(args) })
		if code != 1 || !strings.Contains(stderr, "--web.systemd-socket is not supported") || strings.Contains(stderr, "is up") {
			t.Errorf("medic %s: exit %d, stderr:\n%s\nwant exit 1 refusing --web.systemd-socket", strings.Join(args, " "), code, stderr)
		}
	}
}
