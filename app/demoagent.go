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

	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/queue"
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

	// Pool, when set, makes it also a config agent of that pool: the
	// reference consumer of `medic agent` (queue.Consumer) with Name as its
	// agent ID, reading the pool block (device_url, check_interval) from
	// ConfigFile and its Redis at RedisURL. /die then shows a switchover.
	Pool       string
	ConfigFile string
	RedisURL   string
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
// SIGTERM (ctx) it unregisters and returns. With Pool set it also delivers
// the pool's configs while it is the active agent; /die is then a crash
// the coordinator sees (no deregistration), while /hang stops only
// /healthz, not the consumer's own heartbeats. It exits when its parent
// (the demo) is gone, so that no demo agent outlives its demo or test.
func RunDemoAgent(ctx context.Context, o DemoAgentOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go exitWithParent(ctx, cancel, log)
	var consumer *queue.Consumer
	if o.Pool != "" {
		c, closeClient, err := demoConsumer(o, log)
		if err != nil {
			return err
		}
		defer closeClient()
		consumer = c
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
	srv := ServerTimeouts{}.Server(mux)
	go srv.Serve(l)
	// The consumer starts once nothing can fail any more, and the return
	// below waits for it.
	var consumerDone chan error
	if consumer != nil {
		consumerDone = make(chan error, 1)
		go func() { consumerDone <- consumer.Run(ctx) }()
	}
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
			err := srv.Shutdown(sctx)
			if consumerDone != nil {
				// It deregisters, so the coordinator moves the pool away now.
				if cerr := <-consumerDone; cerr != nil {
					return cerr
				}
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
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

// demoConsumer builds the pool consumer of a demo config agent the way
// `medic agent` does: device URLs and the heartbeat period from the pool
// block.
func demoConsumer(o DemoAgentOptions, log *slog.Logger) (*queue.Consumer, func(), error) {
	if o.ConfigFile == "" || o.RedisURL == "" {
		return nil, nil, errors.New("a demo config agent (--pool) needs --config.file and --redis.url")
	}
	cfg, err := LoadConfig(o.ConfigFile)
	if err != nil {
		return nil, nil, err
	}
	pool := cfg.Pool(o.Pool)
	if pool == nil {
		return nil, nil, fmt.Errorf("no pool %q in %s", o.Pool, o.ConfigFile)
	}
	client, err := redisx.New(o.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	c, err := queue.NewConsumer(queue.ConsumerOptions{
		Client: client, Pool: o.Pool, Agent: o.Name, Host: "demo",
		DeviceURL:         pool.DeviceURLFor,
		HeartbeatInterval: min(max(pool.CheckInterval/4, 50*time.Millisecond), time.Second),
		MaxAttempts:       pool.MaxAttempts,
		Logger:            log,
	})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return c, func() { client.Close() }, nil
}

// exitWithParent cancels ctx once the process that started this one is
// gone (it is re-parented): a demo or test killed outright cannot stop its
// agents itself.
func exitWithParent(ctx context.Context, cancel func(), log *slog.Logger) {
	parent := os.Getppid()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != parent {
				log.Warn("demo agent's parent is gone; stopping", "parent", parent)
				cancel()
				return
			}
		}
	}
}
