package execx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medicops/medic/internal/procsig"
)

// DefaultTimeout applies when Cmd.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// OutputGrace is how long Run keeps reading output after the command has
// exited, for whatever it left running with its stdout (a daemon it started).
const OutputGrace = 500 * time.Millisecond

// DefaultMaxOutput applies when Cmd.MaxOutput is zero.
const DefaultMaxOutput = 64 << 10

// Cmd describes one run.
type Cmd struct {
	Argv []string
	// Env is added to a minimal base environment (PATH, HOME, LANG) unless
	// InheritEnv is set.
	Env        map[string]string
	InheritEnv bool
	Dir        string
	Timeout    time.Duration
	// Grace is how long the group gets after SIGTERM before SIGKILL; 0 means
	// SIGKILL straight away.
	Grace     time.Duration
	MaxOutput int
	Stdin     []byte
}

// Result is what happened.
type Result struct {
	ExitCode  int // -1 when the process did not exit normally (killed, not started)
	Output    string
	Truncated bool
	TimedOut  bool
	Duration  time.Duration
	Err       error // start failure, timeout or non-zero exit
}

// OK reports a zero exit.
func (r Result) OK() bool { return r.Err == nil && r.ExitCode == 0 }

// cappedBuffer keeps the first max bytes and counts the rest.
type cappedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
			c.truncated = true
		} else {
			c.buf.Write(p)
		}
	} else if len(p) > 0 {
		c.truncated = true
	}
	return len(p), nil
}

// Environ builds the environment of a child: a minimal base (or the
// parent's with inherit) plus extra, sorted for reproducibility. Values
// of extra go through EnvValue: a NUL byte or invalid UTF-8 in a label
// value is escaped, never a reason for the command not to start.
func Environ(extra map[string]string, inherit bool) []string {
	var env []string
	if inherit {
		env = os.Environ()
	} else {
		for _, k := range []string{"PATH", "HOME", "LANG", "TZ"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
		if _, ok := os.LookupEnv("PATH"); !ok {
			env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
		}
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+EnvValue(extra[k]))
	}
	return env
}

// Run runs c and waits for it and its whole process group (bounded by the
// timeout): a script that backgrounds a grandchild cannot outlive it.
func Run(ctx context.Context, c Cmd) Result {
	start := time.Now()
	res := Result{ExitCode: -1}
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		res.Err = errors.New("empty argv")
		return res
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	max := c.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	out := &cappedBuffer{max: max}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = Environ(c.Env, c.InheritEnv)
	cmd.Dir = c.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	// Its own group, killed whole on timeout; and it dies with medic.
	cmd.SysProcAttr = procsig.ChildAttr()
	// A command that starts a daemon in a session of its own (setsid -f,
	// a double fork) leaves it holding our output pipe; without a bound,
	// Wait would wait for that daemon to exit.
	cmd.WaitDelay = OutputGrace
	if err := cmd.Start(); err != nil {
		res.Err = fmt.Errorf("start %s: %w", c.Argv[0], err)
		res.Duration = time.Since(start)
		return res
	}
	pgid := cmd.Process.Pid
	if t := trackStarted(pgid); t != nil {
		defer t.Ended(pgid) // after the group kill below
	}

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var waitErr error
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		res.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
		KillGroup(pgid, c.Grace, done)
		waitErr = <-done
	}
	// The leader has exited; anything it left behind in its group goes too.
	_ = procsig.Group(pgid, syscall.SIGKILL)

	res.Duration = time.Since(start)
	out.mu.Lock()
	res.Output = out.buf.String()
	res.Truncated = out.truncated
	out.mu.Unlock()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	switch {
	case res.TimedOut:
		res.Err = fmt.Errorf("%s timed out after %s; process group killed", c.Argv[0], timeout)
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("%s cancelled: %w", c.Argv[0], ctx.Err())
	case waitErr != nil && !errors.Is(waitErr, exec.ErrWaitDelay):
		res.Err = fmt.Errorf("%s: %w", c.Argv[0], waitErr)
	}
	return res
}

// KillGroup sends SIGTERM to the process group, waits up to grace for done
// to fire, then SIGKILLs the group. With grace 0 it SIGKILLs at once. done
// may be nil. It does not consume from done when the process exits in time
// (the value is put back).
func KillGroup(pgid int, grace time.Duration, done chan error) {
	if grace > 0 {
		_ = procsig.Group(pgid, syscall.SIGTERM)
		if done != nil {
			select {
			case err := <-done:
				done <- err
				_ = procsig.Group(pgid, syscall.SIGKILL)
				return
			case <-time.After(grace):
			}
		} else {
			time.Sleep(grace)
		}
	}
	_ = procsig.Group(pgid, syscall.SIGKILL)
}

// SanitizeEnvName turns an arbitrary label name into an environment
// variable name suffix: upper case, [A-Z0-9_] only.
func SanitizeEnvName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// LabelEnv maps alert labels to MEDIC_LABEL_<NAME> variables. Values are
// passed verbatim (data in the environment, never interpreted), except
// that NUL bytes and invalid UTF-8 are escaped as \xNN (EnvValue). Names
// that collide once sanitised are all kept (LabelEnvNames).
func LabelEnv(labels map[string]string) map[string]string {
	env := make(map[string]string, len(labels))
	names := LabelEnvNames(labels)
	for k, v := range labels {
		env[names[k]] = EnvValue(v)
	}
	return env
}

// LabelEnvNames names each label's variable. Label names that sanitise
// to the same variable (a-b, a_b and A_B are all MEDIC_LABEL_A_B) are all
// kept, deterministically: in byte order of the original names, the first
// gets MEDIC_LABEL_A_B, the next MEDIC_LABEL_A_B_2, then _3, and so on,
// skipping any name another label already has. No value is dropped, and
// the same labels always give the same names.
func LabelEnvNames(labels map[string]string) map[string]string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	base := make(map[string]string, len(keys))
	natural := make(map[string]int, len(keys)) // variable → labels that sanitise to it
	for _, k := range keys {
		base[k] = "MEDIC_LABEL_" + SanitizeEnvName(k)
		natural[base[k]]++
	}
	names := make(map[string]string, len(keys))
	taken := make(map[string]bool, len(keys))
	for _, k := range keys {
		name := base[k]
		for i := 2; taken[name] || (name != base[k] && natural[name] > 0); i++ {
			name = base[k] + "_" + strconv.Itoa(i)
		}
		taken[name] = true
		names[k] = name
	}
	return names
}
