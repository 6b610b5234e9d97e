package procsig

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestRefusesEveryone(t *testing.T) {
	own, err := syscall.Getpgid(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		send func() error
	}{
		{"pid 0", func() error { return Process(0, syscall.SIGSTOP) }},
		{"pid -1", func() error { return Process(-1, syscall.SIGKILL) }},
		{"pid 1", func() error { return Process(1, syscall.SIGTERM) }},
		{"self", func() error { return Process(os.Getpid(), syscall.SIGSTOP) }},
		{"group 0", func() error { return Group(0, syscall.SIGKILL) }},
		{"group 1", func() error { return Group(1, syscall.SIGKILL) }},
		{"group -5", func() error { return Group(-5, syscall.SIGKILL) }},
		{"own group", func() error { return Group(own, syscall.SIGSTOP) }},
		{"unstarted cmd", func() error { return Cmd(exec.Command("true"), syscall.SIGKILL) }},
		{"unstarted group", func() error { return CmdGroup(&exec.Cmd{}, syscall.SIGKILL) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(); !errors.Is(err, ErrUnsafeTarget) {
				t.Fatalf("err = %v, want ErrUnsafeTarget", err)
			}
		})
	}
}

func TestSignalsAGroupItOwns(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = ChildAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := Process(cmd.Process.Pid, 0); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if err := CmdGroup(cmd, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if err == nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("wait = %v, status %v", err, ws)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("group not killed")
	}
}
