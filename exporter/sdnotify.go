package exporter

import (
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// openNotify listens on the agent's NOTIFY_SOCKET, a unix datagram socket
// speaking systemd's sd_notify protocol, so daemons that already support
// systemd's watchdog are guarded unchanged. The path is short (a hash of
// the name) because sun_path holds 108 bytes.
func (a *agent) openNotify(runtimeDir string) error {
	h := fnv.New64a()
	h.Write([]byte(a.name))
	path := filepath.Join(runtimeDir, fmt.Sprintf("n%016x.sock", h.Sum64()))
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	// Only the node's user (and so its children) may speak to it.
	if err := os.Chmod(path, 0o600); err != nil {
		conn.Close()
		return err
	}
	a.mu.Lock()
	a.notify = conn
	a.notifyPath = path
	a.mu.Unlock()
	a.n.wg.Add(1)
	go func() {
		defer a.n.wg.Done()
		a.readNotify(conn)
	}()
	return nil
}

func (a *agent) readNotify(conn *net.UnixConn) {
	buf := make([]byte, 4096)
	for {
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			return // closed at shutdown
		}
		a.handleNotify(string(buf[:n]))
	}
}

// handleNotify applies one sd_notify datagram (newline-separated
// assignments).
func (a *agent) handleNotify(msg string) {
	for _, line := range strings.Split(msg, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch key {
		case "READY":
			if val == "1" {
				a.mu.Lock()
				a.ready = true
				a.mu.Unlock()
				a.n.log.Debug("sd_notify READY", "agent", a.name)
			}
		case "WATCHDOG":
			switch val {
			case "1":
				// Without a timeout (no heartbeat block, no WATCHDOG_USEC=)
				// there is nothing to guard, as with systemd.
				_ = a.beat(0, "sd_notify")
			case "trigger":
				a.mu.Lock()
				if a.hb.registered {
					a.hb.last = time.Time{}
				}
				a.mu.Unlock()
			}
		case "WATCHDOG_USEC":
			if usec, err := strconv.ParseInt(val, 10, 64); err == nil && usec > 0 {
				_ = a.beat(time.Duration(usec)*time.Microsecond, "sd_notify")
			}
		case "STOPPING":
			if val == "1" {
				a.unregister("sd_notify")
			}
		}
	}
}
