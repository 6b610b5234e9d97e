package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type agent struct {
	name          string
	heartbeatURL  string
	hbTimeout     time.Duration
	hbInterval    time.Duration
	fillDir       string
	hung          atomic.Bool
	noBeat        atomic.Bool
	ignoreTerm    atomic.Bool
	mu            sync.Mutex
	leaked        [][]byte
	fills         int
	hangCh        chan struct{}
	hangOnce      sync.Once
	notifySocket  string
	watchdogEvery time.Duration
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "HTTP listen address")
	addrFile := flag.String("addr-file", "", "write the bound address here")
	pidfile := flag.String("pidfile", "", "write the pid here")
	name := flag.String("name", "", "agent name (default $MEDIC_AGENT)")
	hbURL := flag.String("heartbeat-url", "", "medic node base URL")
	hbTimeout := flag.Duration("heartbeat-timeout", 0, "heartbeat timeout to register with")
	hbInterval := flag.Duration("heartbeat-interval", 0, "heartbeat period")
	fillDir := flag.String("fill-dir", "", "directory /fill writes into")
	hangAfter := flag.Duration("hang-after", 0, "hang after this long")
	dieAfter := flag.Duration("die-after", 0, "exit after this long")
	dieCode := flag.Int("die-code", 1, "exit code for --die-after")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM")
	failStart := flag.Bool("fail-start", false, "exit 1 immediately")
	leakMB := flag.Int("leak-mb", 0, "leak this many MiB at start")
	spin := flag.Bool("spin", false, "burn CPU at start")
	noReady := flag.Bool("no-ready", false, "do not send READY=1")
	flag.Parse()

	if *failStart {
		fmt.Fprintln(os.Stderr, "testagent: --fail-start")
		os.Exit(1)
	}
	a := &agent{
		name:         *name,
		heartbeatURL: strings.TrimRight(*hbURL, "/"),
		hbTimeout:    *hbTimeout,
		hbInterval:   *hbInterval,
		fillDir:      *fillDir,
		hangCh:       make(chan struct{}),
		notifySocket: os.Getenv("NOTIFY_SOCKET"),
	}
	if a.name == "" {
		a.name = os.Getenv("MEDIC_AGENT")
	}
	if a.name == "" {
		a.name = "testagent"
	}
	if a.fillDir == "" {
		a.fillDir, _ = os.Getwd()
	}
	if a.hbInterval <= 0 {
		a.hbInterval = time.Second
	}
	a.watchdogEvery = a.hbInterval
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 && *hbInterval <= 0 {
		a.watchdogEvery = time.Duration(usec) * time.Microsecond / 4
	}
	a.ignoreTerm.Store(*ignoreTerm)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(2)
	}
	addr := ln.Addr().String()
	if *addrFile != "" {
		writeAtomic(*addrFile, addr)
	}
	if *pidfile != "" {
		writeAtomic(*pidfile, strconv.Itoa(os.Getpid())+"\n")
	}
	fmt.Printf("testagent %s pid %d listening on %s\n", a.name, os.Getpid(), addr)

	if *leakMB > 0 {
		a.leak(*leakMB)
	}
	if *spin {
		a.spin(runtime.NumCPU())
	}
	if *hangAfter > 0 {
		time.AfterFunc(*hangAfter, a.hang)
	}
	if *dieAfter > 0 {
		time.AfterFunc(*dieAfter, func() { os.Exit(*dieCode) })
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go a.httpBeats(ctx)
	go a.notifyLoop(ctx, !*noReady)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGTERM && a.ignoreTerm.Load() {
				fmt.Println("testagent: ignoring SIGTERM")
				continue
			}
			a.notify("STOPPING=1")
			a.unregister()
			os.Exit(0)
		}
	}()

	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second}
	_ = srv.Serve(ln)
}

func writeAtomic(path, data string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(2)
	}
	if err := os.Rename(tmp, path); err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(2)
	}
}

func (a *agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if a.hung.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Hour):
			}
			return
		}
		fmt.Fprintf(w, "ok %s pid %d\n", a.name, os.Getpid())
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, os.Getpid())
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		a.hang()
		fmt.Fprintln(w, "hung")
	})
	mux.HandleFunc("/stop-heartbeat", func(w http.ResponseWriter, r *http.Request) {
		a.noBeat.Store(true)
		fmt.Fprintln(w, "heartbeats stopped")
	})
	mux.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		mb := intParam(r, "mb", 64)
		a.leak(mb)
		fmt.Fprintf(w, "leaked %d MiB\n", mb)
	})
	mux.HandleFunc("/spin", func(w http.ResponseWriter, r *http.Request) {
		n := intParam(r, "n", runtime.NumCPU())
		a.spin(n)
		fmt.Fprintf(w, "spinning in %d goroutines\n", n)
	})
	mux.HandleFunc("/fill", func(w http.ResponseWriter, r *http.Request) {
		mb := intParam(r, "mb", 64)
		path, err := a.fill(mb)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, path)
	})
	mux.HandleFunc("/die", func(w http.ResponseWriter, r *http.Request) {
		code := intParam(r, "code", 1)
		fmt.Fprintf(w, "exiting %d\n", code)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go func() {
			time.Sleep(10 * time.Millisecond)
			os.Exit(code)
		}()
	})
	mux.HandleFunc("/ignore-term", func(w http.ResponseWriter, r *http.Request) {
		a.ignoreTerm.Store(true)
		fmt.Fprintln(w, "ignoring SIGTERM")
	})
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		secs := intParam(r, "sleep", 1000)
		cmd := exec.Command("sleep", strconv.Itoa(secs))
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		go cmd.Wait()
		fmt.Fprintln(w, cmd.Process.Pid)
	})
	return mux
}

func intParam(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

func (a *agent) hang() {
	a.hangOnce.Do(func() {
		a.hung.Store(true)
		a.noBeat.Store(true)
		close(a.hangCh)
	})
}

// leak allocates mb MiB and writes every page so it counts in RSS.
func (a *agent) leak(mb int) {
	for i := 0; i < mb; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		a.mu.Lock()
		a.leaked = append(a.leaked, b)
		a.mu.Unlock()
	}
}

func (a *agent) spin(n int) {
	for i := 0; i < n; i++ {
		go func() {
			x := uint64(1)
			for {
				x = x*6364136223846793005 + 1442695040888963407
				if x == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
}

func (a *agent) fill(mb int) (string, error) {
	a.mu.Lock()
	a.fills++
	n := a.fills
	a.mu.Unlock()
	path := filepath.Join(a.fillDir, fmt.Sprintf("fill-%d-%d.bin", os.Getpid(), n))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for i := 0; i < mb; i++ {
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return "", err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// httpBeats registers with medic node and beats until hung or stopped.
func (a *agent) httpBeats(ctx context.Context) {
	if a.heartbeatURL == "" {
		return
	}
	client := &http.Client{Timeout: 2 * time.Second}
	body := "{}"
	if a.hbTimeout > 0 {
		body = fmt.Sprintf(`{"timeout":%q}`, a.hbTimeout.String())
	}
	url := a.heartbeatURL + "/api/v1/heartbeats/" + a.name
	t := time.NewTicker(a.hbInterval)
	defer t.Stop()
	for {
		if !a.noBeat.Load() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := client.Do(req); err != nil {
				fmt.Fprintln(os.Stderr, "testagent: heartbeat:", err)
			} else {
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					fmt.Fprintln(os.Stderr, "testagent: heartbeat:", resp.Status)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.hangCh:
			return
		case <-t.C:
		}
	}
}

func (a *agent) unregister() {
	if a.heartbeatURL == "" {
		return
	}
	req, _ := http.NewRequest(http.MethodDelete, a.heartbeatURL+"/api/v1/heartbeats/"+a.name, nil)
	client := &http.Client{Timeout: time.Second}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
}

// notifyLoop speaks sd_notify: READY=1 once, then WATCHDOG=1 periodically.
func (a *agent) notifyLoop(ctx context.Context, ready bool) {
	if a.notifySocket == "" {
		return
	}
	if ready {
		a.notify("READY=1")
	}
	t := time.NewTicker(a.watchdogEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.hangCh:
			return
		case <-t.C:
			if !a.noBeat.Load() {
				a.notify("WATCHDOG=1")
			}
		}
	}
}

func (a *agent) notify(msg string) {
	if a.notifySocket == "" {
		return
	}
	// Go maps a leading "@" to the abstract namespace, as sd_notify does.
	addr := &net.UnixAddr{Name: a.notifySocket, Net: "unixgram"}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testagent: notify:", err)
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		fmt.Fprintln(os.Stderr, "testagent: notify:", err)
	}
}
