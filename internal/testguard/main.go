package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medicops/medic/internal/procsig"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type pkgState struct {
	started time.Time
	running map[string]time.Time // tests in progress
	out     map[string][]string  // output per test ("" = package level)
}

type guard struct {
	mu       sync.Mutex
	pkgs     map[string]*pkgState
	passed   int
	failed   int
	skipped  int
	failPkgs []string
	w        io.Writer
}

func main() {
	deadline := flag.Duration("deadline", 25*time.Minute, "wall-clock limit of the whole run")
	stopped := flag.Duration("stopped", 60*time.Second, "how long a process of the run may stay stopped (SIGSTOP) before the run is failed")
	summaryFile := flag.String("summary", "", "also write the closing 'N passed, N failed, N skipped' line to this file, for a caller to repeat at its very end")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testguard [-deadline D] [-stopped D] -- GO-TEST-ARGS...")
		flag.PrintDefaults()
	}
	flag.Parse()
	code, counts := run(os.Stdout, *deadline, *stopped, flag.Args())
	if *summaryFile != "" {
		if err := os.WriteFile(*summaryFile, []byte(counts+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testguard:", err)
		}
	}
	os.Exit(code)
}

// run runs go test with args under the guard and returns the exit code
// and the closing counts line.
func run(w io.Writer, deadline, stoppedFor time.Duration, args []string) (int, string) {
	g := &guard{pkgs: map[string]*pkgState{}, w: w}
	cmd := exec.Command("go", append([]string{"test", "-json"}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = procsig.ChildAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testguard:", err)
		return 2, ""
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testguard:", err)
		return 2, ""
	}
	pgid := cmd.Process.Pid

	done := make(chan struct{})
	read := make(chan struct{})
	go func() { g.consume(stdout); close(read) }()
	var verdict string
	var vmu sync.Mutex
	go func() {
		tick := time.NewTicker(min(5*time.Second, deadline/4, stoppedFor/4))
		defer tick.Stop()
		since := map[int]time.Time{} // stopped pid -> first seen stopped
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				why := ""
				if now.Sub(start) > deadline {
					why = fmt.Sprintf("the run exceeded its wall-clock limit of %s", deadline)
				} else if pid, d := stoppedMember(pgid, since, now); d > stoppedFor {
					why = fmt.Sprintf("process %d (%s) of the test run has been stopped (SIGSTOP) for %s", pid, comm(pid), d.Round(time.Second))
				}
				if why == "" {
					continue
				}
				vmu.Lock()
				verdict = why
				vmu.Unlock()
				g.report(why)
				// Resume first so that the group can die of SIGKILL promptly
				// and the stopped binaries' deferred output is not waited for.
				_ = procsig.Group(pgid, syscall.SIGCONT)
				if err := procsig.Group(pgid, syscall.SIGKILL); err != nil {
					fmt.Fprintln(os.Stderr, "testguard:", err)
				}
				return
			}
		}
	}()
	<-read
	waitErr := cmd.Wait()
	close(done)
	// Whatever the group left behind (a helper a killed test leaked).
	_ = procsig.Group(pgid, syscall.SIGKILL)

	vmu.Lock()
	v := verdict
	vmu.Unlock()
	counts := g.summary(time.Since(start))
	switch {
	case v != "":
		fmt.Fprintf(g.w, "FAIL: testguard: %s\n", v)
		return 1, counts
	case waitErr != nil || g.failed > 0 || len(g.failPkgs) > 0:
		return 1, counts
	}
	return 0, counts
}

// stoppedMember returns a member of process group pgid that is in the
// stopped state and for how long it has been seen so.
func stoppedMember(pgid int, since map[int]time.Time, now time.Time) (int, time.Duration) {
	entries, _ := os.ReadDir("/proc")
	seen := map[int]bool{}
	var worst int
	var worstD time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 4 {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g != pgid || f[0] != "T" {
			continue
		}
		seen[pid] = true
		if since[pid].IsZero() {
			since[pid] = now
		}
		if d := now.Sub(since[pid]); d > worstD {
			worst, worstD = pid, d
		}
	}
	for pid := range since {
		if !seen[pid] {
			delete(since, pid)
		}
	}
	return worst, worstD
}

func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

func (g *guard) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if json.Unmarshal(line, &ev) != nil || ev.Package == "" && ev.Action == "" {
			// Not an event (a build error on stdout): pass it on.
			g.mu.Lock()
			fmt.Fprintln(g.w, string(line))
			g.mu.Unlock()
			continue
		}
		g.handle(ev)
	}
}

func (g *guard) handle(ev event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.pkgs[ev.Package]
	if p == nil {
		p = &pkgState{started: time.Now(), running: map[string]time.Time{}, out: map[string][]string{}}
		g.pkgs[ev.Package] = p
	}
	switch ev.Action {
	case "run":
		p.running[ev.Test] = time.Now()
	case "output":
		p.out[ev.Test] = append(p.out[ev.Test], ev.Output)
	case "pass", "fail", "skip":
		if ev.Test == "" {
			g.endPackage(ev, p)
			return
		}
		delete(p.running, ev.Test)
		switch ev.Action {
		case "pass":
			g.passed++
		case "skip":
			g.skipped++
		case "fail":
			g.failed++
			// Each test's events carry its own lines only, so a parent
			// and its failing subtests print nothing twice.
			for _, l := range p.out[ev.Test] {
				fmt.Fprint(g.w, l)
			}
		}
		delete(p.out, ev.Test)
	}
}

// endPackage prints the package's closing lines as go test does.
func (g *guard) endPackage(ev event, p *pkgState) {
	lines := p.out[""]
	if ev.Action == "fail" {
		g.failPkgs = append(g.failPkgs, ev.Package)
		// Tests that never ended: the binary panicked or timed out in
		// them, and their output holds the stack.
		running := make([]string, 0, len(p.running))
		for t := range p.running {
			running = append(running, t)
		}
		sort.Strings(running)
		for _, t := range running {
			fmt.Fprintf(g.w, "--- FAIL: %s (did not finish)\n", t)
			for _, l := range p.out[t] {
				fmt.Fprint(g.w, l)
			}
		}
		// Package-level output holds the panic of a timed-out binary, the
		// build failure, or the FAIL line itself.
		for _, l := range lines {
			fmt.Fprint(g.w, l)
		}
	} else {
		for _, l := range lines {
			if strings.HasPrefix(l, "ok") || strings.HasPrefix(l, "?") || strings.HasPrefix(l, "---") {
				fmt.Fprint(g.w, l)
			}
		}
	}
	delete(g.pkgs, ev.Package)
}

// report names every package and test still running.
func (g *guard) report(why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(g.w, "\ntestguard: %s; still running:\n", why)
	names := make([]string, 0, len(g.pkgs))
	for name := range g.pkgs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := g.pkgs[name]
		tests := make([]string, 0, len(p.running))
		for t, at := range p.running {
			tests = append(tests, fmt.Sprintf("%s (%s)", t, time.Since(at).Round(time.Second)))
		}
		sort.Strings(tests)
		fmt.Fprintf(g.w, "  %s, for %s: %s\n", name, time.Since(p.started).Round(time.Second), strings.Join(tests, ", "))
		g.failPkgs = append(g.failPkgs, name)
	}
}

func (g *guard) summary(took time.Duration) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.failPkgs) > 0 {
		fmt.Fprintf(g.w, "FAIL packages: %s\n", strings.Join(g.failPkgs, " "))
	}
	fmt.Fprintf(g.w, "testguard: %s\n", took.Round(time.Second))
	counts := fmt.Sprintf("%d passed, %d failed, %d skipped", g.passed, g.failed, g.skipped)
	fmt.Fprintln(g.w, counts)
	return counts
}
