package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/procsig"
	"github.com/medicops/medic/internal/testport"
)

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	Port int
	Dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Options tune Start.
type Options struct {
	// AOF turns on appendonly with appendfsync always, so that data
	// survives Restart (and every acknowledged write is on disk, as in a
	// production deployment that must not lose a config).
	AOF bool
	// Extra are more redis-server arguments.
	Extra []string
}

// Binary returns the redis-server path or fails the test with the command
// that installs it (make deps installs it; tests never skip for it).
func Binary(t testing.TB) string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: run `make deps` (apt-get install -y redis-server)")
	}
	return p
}

// Start starts a redis-server on a free loopback port and stops it when the
// test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, Port: testport.Free(t), Dir: t.TempDir()}
	s.args = []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port),
		"--dir", s.Dir, "--save", "", "--protected-mode", "no",
		"--daemonize", "no", "--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if o.AOF {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	s.args = append(s.args, o.Extra...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command(Binary(s.t), s.args...)
	cmd.Dir = s.Dir
	// Dies with the test binary even when the test is killed.
	cmd.SysProcAttr = procsig.ChildAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	waitPing(s.t, s.Addr(), 10*time.Second, filepath.Join(s.Dir, "redis.log"))
}

func waitPing(t testing.TB, addr string, d time.Duration, logfile string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logfile)
			t.Fatalf("redis-server on %s did not answer: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// URL is the redis:// URL medic's --redis.url takes.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a go-redis client closed at the end of the test.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// PID is the redis-server's process id (benchmarks read its CPU time in
// /proc), 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill SIGKILLs the server (no shutdown save).
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = procsig.CmdGroup(cmd, syscall.SIGKILL)
	_ = cmd.Wait()
}

// Stop kills the server; safe to call twice.
func (s *Server) Stop() { s.Kill() }

// Restart kills the server and starts it again on the same port and data
// directory; with AOF on, acknowledged writes survive.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Cluster is a 3-master Redis Cluster on loopback.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three cluster-enabled servers and joins them with
// `redis-cli --cluster create`.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found: run `make deps` (apt-get install -y redis-tools)")
	}
	c := &Cluster{}
	var addrs []string
	for i := 0; i < 3; i++ {
		// The cluster bus listens on port+10000 unless told otherwise,
		// a port nobody reserved (another test's, or an outgoing
		// connection's): it gets a free port of its own.
		n := Start(t, Options{Extra: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
			"--cluster-port", strconv.Itoa(testport.Free(t)),
		}})
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node reports the cluster as ok.
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for {
			out, _ := exec.Command(cli, "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster did not become ok: %s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// Addrs are the seed addresses of the cluster.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr())
	}
	return a
}

// URL is the --redis.url for the cluster (see redisx.New).
func (c *Cluster) URL() string {
	u := "redis+cluster://" + c.Nodes[0].Addr() + "?"
	for i, n := range c.Nodes[1:] {
		if i > 0 {
			u += "&"
		}
		u += "addr=" + n.Addr()
	}
	return u
}
