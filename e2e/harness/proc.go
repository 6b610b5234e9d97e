package harness

import (
	"bytes"
	"errors"
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

	"github.com/medicops/medic/internal/procsig"
)

// LookPath returns the path of an installed binary or fails the test with
// the command that installs it.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: run `make deps` (scripts/deps.sh installs it)", name)
	}
	return p
}

// Proc is one child process owned by a test.
type Proc struct {
	Name    string
	Argv    []string
	LogPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	env     []string
	dir     string
}

// ProcOptions tune StartProc.
type ProcOptions struct {
	// Env is added to the test's environment.
	Env []string
	// Dir is the working directory; empty means a fresh temporary one.
	Dir string
	// LogDir receives NAME.log; empty means t.TempDir().
	LogDir string
}

// StartProc starts argv in a process group of its own, output appended to
// a log file. The process is stopped when the test ends, and its log tail
// is printed if the test failed.
func StartProc(t testing.TB, name string, argv []string, o ProcOptions) *Proc {
	t.Helper()
	if o.LogDir == "" {
		o.LogDir = t.TempDir()
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	p := &Proc{
		Name:    name,
		Argv:    argv,
		LogPath: filepath.Join(o.LogDir, sanitize(name)+".log"),
		env:     append(os.Environ(), o.Env...),
		dir:     o.Dir,
	}
	if err := p.start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("---- %s (%s) log tail ----\n%s", name, strings.Join(argv, " "), p.Tail(8<<10))
		}
	})
	return p
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

func (p *Proc) start() error {
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "==== %s start: %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(p.Argv, " "))
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = procsig.ChildAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.waitErr = cmd, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// PID is the process id, 0 when not running.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the process has exited, and how.
func (p *Proc) Exited() (bool, error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true, nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	pid := p.PID()
	if pid <= 1 {
		return errors.New("not running")
	}
	return procsig.Group(pid, sig)
}

// Stop sends SIGTERM to the process group, waits up to grace, then SIGKILL.
// Safe to call more than once.
func (p *Proc) Stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || done == nil || cmd.Process.Pid <= 1 {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = procsig.CmdGroup(cmd, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = procsig.CmdGroup(cmd, syscall.SIGKILL)
		<-done
	}
}

// Kill SIGKILLs the process group and waits for the process.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || done == nil || cmd.Process.Pid <= 1 {
		return
	}
	_ = procsig.CmdGroup(cmd, syscall.SIGKILL)
	<-done
}

// Restart stops the process and starts it again with the same argv.
func (p *Proc) Restart(t testing.TB) {
	t.Helper()
	p.Stop(5 * time.Second)
	if err := p.start(); err != nil {
		t.Fatalf("restart %s: %v", p.Name, err)
	}
}

// Respawn starts the process again with the same argv after it exited
// (Kill): a node SIGKILLed and brought back by its service manager.
func (p *Proc) Respawn(t testing.TB) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatalf("respawn %s: %v", p.Name, err)
	}
}

// Log returns the whole log.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n bytes of the log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		return "…\n" + string(b)
	}
	return string(b)
}

// ReapUnder kills every process whose executable lives under dir. The
// e2e binaries are built into one temporary directory, so this finds the
// test agents a crashed `medic node` could leave behind, and nothing else.
func ReapUnder(dir string) (killed []int) {
	dir = filepath.Clean(dir) + string(os.PathSeparator)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(exe, dir) {
			if procsig.Process(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
	}
	return killed
}
