package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// DemoAgentOptions configure RunDemoAgent.
type DemoAgentOptions struct {
	Name   string
	Listen string
	// HeartbeatURL is the node's base URL; empty disables heartbeats.
	HeartbeatURL      string
	HeartbeatTimeout  time.Duration
	HeartbeatInterval time.Duration
	Logger            *slog.Logger
}

// RunDemoAgent is `medic demo-agent`: the small agent the demo estate
// supervises (the subset of the test agent a demo needs). It serves
//
//	/healthz  200 "ok NAME pid PID"; blocks once hung
//	/pid      its pid
//	/hang     stop answering /healthz and stop heartbeating
//	/die      exit 1 at once
//
// and heartbeats PUT HEARTBEAT_URL/api/v1/heartbeats/NAME until hung. On
// SIGTERM (ctx) it unregisters and returns.
func RunDemoAgent(ctx context.Context, o DemoAgentOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 5 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = time.Second
	}
	var hung atomic.Bool
	hangCh := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if hung.Load() {
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, "ok %s pid %d\n", o.Name, os.Getpid())
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, os.Getpid()) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		if hung.CompareAndSwap(false, true) {
			close(hangCh)
			log.Warn("demo agent hanging on request", "agent", o.Name)
		}
		fmt.Fprintln(w, "hanging")
	})
	mux.HandleFunc("/die", func(w http.ResponseWriter, r *http.Request) {
		log.Warn("demo agent dying on request", "agent", o.Name)
		os.Exit(1)
	})
	l, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	log.Info("demo agent up", "agent", o.Name, "listen", l.Addr().String(), "pid", os.Getpid())

	beat := func(method string) {
		if o.HeartbeatURL == "" {
			return
		}
		body := fmt.Sprintf(`{"timeout":%q}`, o.HeartbeatTimeout.String())
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, method, o.HeartbeatURL+"/api/v1/heartbeats/"+o.Name, bytes.NewBufferString(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Debug("heartbeat failed", "err", err)
			return
		}
		resp.Body.Close()
	}
	tick := time.NewTicker(o.HeartbeatInterval)
	defer tick.Stop()
	beat(http.MethodPut)
	for {
		select {
		case <-ctx.Done():
			if !hung.Load() {
				beat(http.MethodDelete)
			}
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return nil
		case <-hangCh:
			hangCh = nil // a nil channel never fires again; heartbeats stop below
		case <-tick.C:
			if !hung.Load() {
				beat(http.MethodPut)
			}
		}
	}
}
