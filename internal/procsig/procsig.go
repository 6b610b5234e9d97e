package procsig

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// ErrUnsafeTarget is returned for a pid or process group ≤ 1.
var ErrUnsafeTarget = errors.New("refusing to signal pid or process group ≤ 1")

// Process sends sig to the single process pid (> 1, and not the caller).
func Process(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return fmt.Errorf("%w: pid %d, signal %v", ErrUnsafeTarget, pid, sig)
	}
	if pid == os.Getpid() && sig != 0 {
		return fmt.Errorf("%w: pid %d is this process, signal %v", ErrUnsafeTarget, pid, sig)
	}
	return syscall.Kill(pid, sig)
}

// Group sends sig to every process of process group pgid (> 1, and not the
// caller's own group).
func Group(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return fmt.Errorf("%w: process group %d, signal %v", ErrUnsafeTarget, pgid, sig)
	}
	if own, err := syscall.Getpgid(0); err == nil && own == pgid {
		return fmt.Errorf("%w: process group %d is this process's own, signal %v", ErrUnsafeTarget, pgid, sig)
	}
	return syscall.Kill(-pgid, sig)
}

// Self sends sig to the calling process (tests of signal handling).
func Self(sig syscall.Signal) error { return syscall.Kill(os.Getpid(), sig) }

// Cmd signals a started command's process, refusing one that never started.
func Cmd(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%w: command not started, signal %v", ErrUnsafeTarget, sig)
	}
	return Process(cmd.Process.Pid, sig)
}

// CmdGroup signals the process group a command leads (it must have been
// started with Setpgid, so its pgid is its pid).
func CmdGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%w: command not started, signal %v", ErrUnsafeTarget, sig)
	}
	return Group(cmd.Process.Pid, sig)
}

// ChildAttr is the SysProcAttr of a helper process a test starts: its own
// process group, so the test can kill all of it, and SIGKILL when the
// thread that started it dies, so a killed test leaves no orphan behind.
// Pdeathsig fires when the starting OS thread exits; callers that care
// lock their goroutine to the thread or accept that the group kill in
// cleanup is the primary mechanism.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// DieWithParent is ChildAttr without the process group of its own, for
// tests whose subject is the process's group membership.
func DieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
