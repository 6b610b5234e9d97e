package app

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
)

// An unauthenticated client that sends its login body a byte at a time
// is cut off once the server's read timeout has passed, not held open.
func TestSlowBodyIsCut(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
	cfg := filepath.Join(dir, "empty.hcl")
	os.WriteFile(cfg, nil, 0o644)
	const readTimeout = time.Second
	r := start(t, Options{
		ConfigFile: cfg, RedisURL: rs.URL(), ListenAddresses: []string{"127.0.0.1:0"}, TokenFile: tokenFile,
		Timeouts: ServerTimeouts{Read: readTimeout},
	})
	defer r.stop()
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	if _, err := conn.Write([]byte("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nt")); err != nil {
		t.Fatal(err)
	}
	// Trickle the body; the server must end the connection (an answer,
	// then EOF, or a reset) well before the body could be complete.
	closed := make(chan time.Duration, 1)
	go func() {
		br := bufio.NewReader(conn)
		for {
			if _, err := br.ReadByte(); err != nil {
				closed <- time.Since(began)
				return
			}
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(20 * time.Second) // 1000 bytes would take 100 s
	for {
		select {
		case d := <-closed:
			if d < readTimeout {
				t.Errorf("connection closed after %s, before the read timeout of %s", d, readTimeout)
			}
			t.Logf("slow body cut after %s (read timeout %s)", d, readTimeout)
			return
		case <-tick.C:
			conn.Write([]byte("o")) // errors once the server has closed: the reader reports it
		case <-limit:
			t.Fatalf("a body trickled at 10 bytes/s held the connection for 20 s; read timeout %s", readTimeout)
		}
	}
}

func TestDefaultServerTimeouts(t *testing.T) {
	srv := ServerTimeouts{}.Server(nil)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 30*time.Second || srv.IdleTimeout <= 0 {
		t.Errorf("server timeouts %v %v %v %v: want all set, WriteTimeout beyond the 30 s switchover wait",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
}
