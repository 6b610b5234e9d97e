package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medicops/medic/internal/procsig"
)

// medicBinary is the `medic` binary `make build` wrote to bin/medic. A
// binary older than any non-test Go source of the module would measure
// other code than the tree's, so that fails too.
func medicBinary(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "medic")
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("%s: %v: run `make build` first (make bench does)", bin, err)
	}
	var newer string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || newer != "" {
			return filepath.SkipDir
		}
		if d.IsDir() && (d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			if info, err := d.Info(); err == nil && info.ModTime().After(fi.ModTime()) {
				newer = p
			}
		}
		return nil
	})
	if newer != "" {
		t.Fatalf("%s is older than %s: run `make build` first (make bench does)", bin, newer)
	}
	return bin
}

// proc is a child process the test owns: in a process group of its own
// (so that stopping it stops anything it started) and with Pdeathsig, so
// that it dies with the test binary even when no cleanup runs.
type proc struct {
	cmd  *exec.Cmd
	out  *syncWriter
	done chan struct{}
	err  error
}

func startProc(t testing.TB, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	p := &proc{cmd: cmd, out: &syncWriter{w: &bytes.Buffer{}}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = procsig.ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", strings.Join(argv, " "), p.output())
		}
	})
	return p
}

// signal sends sig to the process's group (procsig refuses pid and group
// ≤ 1), and refuses a group the process no longer leads.
func (p *proc) signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return errors.New("process has exited")
	default:
	}
	if pgid, err := syscall.Getpgid(p.cmd.Process.Pid); err != nil || pgid != p.cmd.Process.Pid {
		return fmt.Errorf("refusing to signal a process group the child does not lead (%v)", err)
	}
	return procsig.CmdGroup(p.cmd, sig)
}

// stop sends SIGTERM to the group, then SIGKILL after grace; it returns
// once the process was reaped. Safe to call twice.
func (p *proc) stop(grace time.Duration) {
	if p.signal(syscall.SIGTERM) != nil {
		<-p.done
		return
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.signal(syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) output() string {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return p.out.w.String()
}
