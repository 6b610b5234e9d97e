package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/bridge"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/app"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/queue"
	"github.com/medicops/medic/runbooks"
)

func init() {
	register("node", "Exporter, heartbeat API, supervisor of command agents and executor of jobs for this node.", setupNode)
}

// nodeOptions are the flags of `medic node`.
type nodeOptions struct {
	ConfigFile    string
	RedisURL      string
	Prefix        string
	NodeName      string
	Listen        []string
	WebConfigFile string
	StopGrace     time.Duration
	CPUWindow     time.Duration
	RuntimeDir    string
	// Registry, when set, is what /metrics serves (tests).
	Registry *prometheus.Registry
	// OnListening is called with the bound addresses (tests).
	OnListening func(addrs []string)
}

func setupNode(cmd *kingpin.CmdClause) action {
	host, _ := os.Hostname()
	var o nodeOptions
	cmd.Flag("config.file", "HCL file or directory of *.hcl files.").Required().StringVar(&o.ConfigFile)
	cmd.Flag("redis.url", "The estate's Redis (redis://, rediss://, redis+cluster://, redis+sentinel://). With it the node takes the shared per-agent lease, stores watchdog run records and publishes its state for the bridge's status page; without it the lease is in-process.").StringVar(&o.RedisURL)
	cmd.Flag("redis.prefix", "Prefix of every Redis key.").Default(bridge.DefaultPrefix).StringVar(&o.Prefix)
	cmd.Flag("node.name", "This node's name: it runs the agents whose node is this name or unset.").Default(host).StringVar(&o.NodeName)
	cmd.Flag("node.stop-grace", "Time a stopped agent's process group gets between SIGTERM and SIGKILL.").Default(exporter.DefaultStopGrace.String()).DurationVar(&o.StopGrace)
	cmd.Flag("node.cpu-window", "Window over which usage.cpu is measured at diagnosis time.").Default(exporter.DefaultCPUWindow.String()).DurationVar(&o.CPUWindow)
	cmd.Flag("node.runtime-dir", "Directory for the agents' NOTIFY_SOCKETs and default working directories (default: a new temporary directory).").StringVar(&o.RuntimeDir)
	webFlags := kingpinflag.AddFlags(cmd, ":9105")
	return func(ctx context.Context, logger *slog.Logger) error {
		o.Listen = *webFlags.WebListenAddresses
		o.WebConfigFile = *webFlags.WebConfigFile
		return runNode(ctx, logger, o)
	}
}

// runNode is `medic node`: the node (supervisor, exporter, heartbeat API,
// watchdog) with the engine as its watchdog's runner, served over HTTP until
// ctx ends. SIGHUP and POST /-/reload reload the configuration safely.
func runNode(ctx context.Context, logger *slog.Logger, o nodeOptions) error {
	if o.NodeName == "" {
		return errors.New("no node name: set --node.name")
	}
	load := func() (*hcl.Config, error) { return app.LoadConfig(o.ConfigFile) }
	cfg, err := load()
	if err != nil {
		return err
	}

	var client redis.UniversalClient
	if o.RedisURL != "" {
		if client, err = redisx.New(o.RedisURL); err != nil {
			return err
		}
		defer client.Close()
	} else {
		logger.Warn("no --redis.url: the per-agent lease is in-process only, watchdog run records are only logged, no state for the bridge")
	}

	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("medic"),
	)

	var locker runbooks.Locker = runbooks.NewMemoryLocker()
	var onRecord func(*runbooks.RunRecord)
	var onReload func(*hcl.Config) error
	var store *bridge.RunStore
	var switcher runbooks.Switcher
	if client != nil {
		// Not run: a switchover runbook only asks the bridges' leased
		// coordinator to switch the pool, and waits for it.
		coord, err := queue.NewCoordinator(queue.CoordinatorOptions{
			Client: client, Prefix: o.Prefix, Pools: app.PoolSpecs(cfg), Logger: logger.With("component", "switcher"),
		})
		if err != nil {
			return err
		}
		switcher = coord
		onReload = func(c *hcl.Config) error { return coord.SetPools(app.PoolSpecs(c)) }
		locker = runbooks.NewRedisLocker(client, o.Prefix).WithLogger(logger)
		store = bridge.NewRunStore(client, bridge.StoreOptions{Keys: bridge.Keys{Prefix: o.Prefix}})
		onRecord = func(rec *runbooks.RunRecord) {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := store.Save(sctx, rec); err != nil {
				logger.Error("store watchdog run record", "run", rec.ID, "err", err)
			}
		}
	}

	node, err := exporter.New(exporter.Options{
		Config: cfg, NodeName: o.NodeName, Logger: logger.With("component", "node"),
		Registerer: reg, Gatherer: reg, Redis: client, RedisPrefix: o.Prefix,
		Load: load, OnReload: onReload, OnRecord: onRecord,
		StopGrace: o.StopGrace, CPUWindow: o.CPUWindow, RuntimeDir: o.RuntimeDir,
	})
	if err != nil {
		return err
	}
	// The engine needs the node (its Agents) and the node needs the engine
	// (its watchdog's runner); both read the configuration the node holds,
	// so a reload reaches them together.
	engine := runbooks.New(runbooks.Options{
		Config: node.Config, Node: o.NodeName, Agents: node, Locker: locker, Switcher: switcher,
		Logger: logger.With("component", "engine"), Registerer: reg,
	})
	node.SetRunner(engine)

	// Job consumer: the bridge routes alerts to this node through the
	// stream medic:{node:NAME}:jobs; the consumer runs them with the engine
	// and stores their records. It stops before the node, so that jobs in
	// flight finish (or are handed back) while their agents still run.
	var consumer *bridge.Consumer
	if client != nil {
		consumer = bridge.NewConsumer(bridge.ConsumerOptions{
			Client: client, Keys: bridge.Keys{Prefix: o.Prefix}, Node: o.NodeName, Runner: engine, Store: store,
			Logger: logger.With("component", "consumer"), Metrics: bridge.NewConsumerMetrics(reg),
		})
	}

	srv := &http.Server{Handler: node.Handler(), ReadHeaderTimeout: 10 * time.Second}
	webCfg := &web.FlagConfig{WebListenAddresses: &o.Listen, WebConfigFile: &o.WebConfigFile}
	serveErr := make(chan error, 1)
	var listening []string
	for _, addr := range o.Listen {
		// Listen first, so that a busy port fails the start.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		defer l.Close()
		listening = append(listening, l.Addr().String())
		go func() {
			if err := web.Serve(l, srv, webCfg, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
				select {
				case serveErr <- err:
				default:
				}
			}
		}()
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(runCtx) }()
	consumerCtx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		if consumer == nil {
			return
		}
		if err := consumer.Run(consumerCtx); err != nil {
			logger.Error("job consumer stopped", "err", err)
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-hup:
				if err := node.Reload(runCtx); err != nil {
					logger.Error("reload on SIGHUP failed; keeping the old configuration", "err", err)
				}
			}
		}
	}()

	logger.Info("medic node is up", "node", o.NodeName, "listen", listening, "agents", len(cfg.AgentsForNode(o.NodeName)))
	if o.OnListening != nil {
		o.OnListening(listening)
	}
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		logger.Error("HTTP server failed", "err", err)
	case err = <-nodeDone:
		return fmt.Errorf("node stopped: %v", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	stopConsumer()
	<-consumerDone
	stop()
	<-nodeDone // stops the supervised agents
	return err
}
