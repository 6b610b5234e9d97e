package app

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// webAuth validates --web.config.file, so that a bad file is reported with
// its name before anything starts, and says whether it authenticates
// clients (basic_auth_users or client_auth_type RequireAndVerifyClientCert;
// TLS alone authenticates nobody) and whether it has basic-auth users.
func webAuth(path string) (authed, users bool, err error) {
	if path == "" {
		return false, false, nil
	}
	if err := web.Validate(path); err != nil {
		return false, false, fmt.Errorf("--web.config.file %s: %w", path, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return false, false, fmt.Errorf("--web.config.file %s: %w", path, err)
	}
	var c web.Config
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return false, false, fmt.Errorf("--web.config.file %s: %w", path, err)
	}
	users = len(c.Users) > 0
	return users || c.TLSConfig.ClientAuth == "RequireAndVerifyClientCert", users, nil
}

// checkExposure (bridge and serve) validates --web.config.file and refuses
// an unauthenticated bridge on anything but loopback: authenticated means
// a bearer token, or a web config that authenticates clients. It says
// whether the web config has basic-auth users (bridge.Options.WebUsers)
// and whether it authenticates clients at all.
func checkExposure(addrs []string, token bool, webConfigFile string) (webUsers, webAuthed bool, err error) {
	authed, users, err := webAuth(webConfigFile)
	if err != nil {
		return false, false, err
	}
	if token || authed {
		return users, authed, nil
	}
	for _, a := range addrs {
		if isLoopback(a) {
			continue
		}
		if webConfigFile != "" {
			return false, false, fmt.Errorf("refusing to start: --web.config.file %s sets neither basic_auth_users nor client_auth_type: RequireAndVerifyClientCert, "+
				"so the bridge would accept unauthenticated requests on %q, which is not loopback-only. "+
				"Add basic_auth_users (or verified client certificates) to it, set --bridge.token-file, or listen on 127.0.0.1, [::1] or localhost only", webConfigFile, a)
		}
		return false, false, fmt.Errorf("refusing to start: the bridge would accept unauthenticated requests on %q, which is not loopback-only. "+
			"Set --bridge.token-file (a bearer token, what Alertmanager's http_config.authorization sends) "+
			"or --web.config.file (basic auth / TLS), or listen on 127.0.0.1, [::1] or localhost only", a)
	}
	return false, false, nil
}

// checkNodeExposure (medic node) validates --web.config.file and warns,
// without refusing (exporters commonly run without authentication), when
// the node listens beyond loopback with no authentication: anyone who
// reaches it can send or delete heartbeats and reload its configuration.
func checkNodeExposure(addrs []string, webConfigFile string, log *slog.Logger) error {
	authed, _, err := webAuth(webConfigFile)
	if err != nil || authed {
		return err
	}
	for _, a := range addrs {
		if !isLoopback(a) {
			log.Warn("the node listens beyond loopback without authentication: anyone who can reach it can PUT/DELETE heartbeats (/api/v1/heartbeats/) and POST /-/reload; "+
				"set --web.config.file with basic_auth_users or client_auth_type: RequireAndVerifyClientCert, or listen on 127.0.0.1, [::1] or localhost only", "listen", a)
			return nil
		}
	}
	return nil
}

// warnOpenHeartbeats (serve) warns that the node's heartbeat API, served
// on the bridge's address, is outside the bridge's token (agents' heartbeat
// clients send none): beyond loopback without a web config that
// authenticates, anyone who reaches it can send or delete heartbeats.
// Without a token checkExposure has already refused that case.
func warnOpenHeartbeats(addrs []string, token, webAuthed bool, log *slog.Logger) {
	if !token || webAuthed {
		return
	}
	for _, a := range addrs {
		if !isLoopback(a) {
			log.Warn("the node's heartbeat API (PUT/DELETE /api/v1/heartbeats/) is not behind --bridge.token-file and listens beyond loopback: anyone who can reach it can send or delete heartbeats; "+
				"listen on 127.0.0.1, or set --web.config.file with basic_auth_users or client certificates", "listen", a)
			return
		}
	}
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
