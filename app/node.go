package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/queue"
	"github.com/medicops/medic/runbooks"
)

// NodeOptions are what `medic node` configures.
type NodeOptions struct {
	// ConfigFile is --config.file: an HCL file or a directory of them.
	ConfigFile string
	// RedisURL is --redis.url; empty: the per-agent lease is in-process,
	// watchdog run records are only logged, no jobs and no state for the
	// bridge.
	RedisURL string
	// Prefix is the Redis key prefix (default "medic:").
	Prefix string
	// NodeName is --node.name: the node runs the agents whose node is
	// this name or unset.
	NodeName string

	ListenAddresses []string
	WebConfigFile   string
	// EnablePprof is --web.enable-pprof: serve net/http/pprof under
	// /debug/pprof/.
	EnablePprof bool

	StopGrace  time.Duration
	CPUWindow  time.Duration
	RuntimeDir string
	// Jobs is --node.jobs: the bridge's jobs the node runs at once; 0
	// means the consumer's default (4).
	Jobs int

	Logger *slog.Logger
	// Registry, when set, is the registry /metrics serves (tests read it).
	Registry *prometheus.Registry
	// OnListening is called with the bound addresses once serving.
	OnListening func(addrs []string)
	// Timeouts of the HTTP server; zero: DefaultServerTimeouts.
	Timeouts ServerTimeouts
}

// RunNode is `medic node`: the node (supervisor, exporter, heartbeat API,
// watchdog) with the engine as its watchdog's runner and, with Redis, the
// consumer of the jobs the bridge routes to it, served over HTTP until ctx
// ends. SIGHUP and POST /-/reload reload the configuration safely. Shutdown
// is ordered: HTTP, then the job consumer, then the node and its agents,
// then Redis.
func RunNode(ctx context.Context, o NodeOptions) error {
	if o.NodeName == "" {
		return errors.New("no node name: set --node.name")
	}
	if o.Jobs < 0 {
		return fmt.Errorf("--node.jobs=%d: want at least 1", o.Jobs)
	}
	if o.Prefix == "" {
		o.Prefix = keys.DefaultPrefix
	}
	if len(o.ListenAddresses) == 0 {
		o.ListenAddresses = []string{":9105"}
	}
	var cleanups cleanupList
	defer func() { cleanups.run() }()
	log, cfg, load, err := begin(o.Logger, o.ConfigFile)
	if err != nil {
		return err
	}
	if err := checkNodeExposure(o.ListenAddresses, o.WebConfigFile, log); err != nil {
		return err
	}
	if len(cfg.AgentsForNode(o.NodeName)) == 0 {
		log.Warn(fmt.Sprintf("node %s runs no agents: no agent has node = %q or no node; check --node.name (default: the hostname)", o.NodeName, o.NodeName))
	}
	rl := newReloader(cfg, load, log)

	var client redis.UniversalClient
	if o.RedisURL != "" {
		if client, err = redisx.New(o.RedisURL); err != nil {
			return err
		}
		cleanups.add(func() { client.Close() })
		pingRedis(ctx, client, o.RedisURL, log)
	} else {
		log.Warn("no --redis.url: the per-agent lease is in-process only, watchdog run records are only logged, no state for the bridge")
	}

	reg := processRegistry(o.Registry)
	runs := runbooks.NewMetrics(reg)
	rl.register(reg)
	var store *jobs.RunStore
	var switcher runbooks.Switcher
	if client != nil {
		// Not run: a switchover runbook only asks the bridges' leased
		// coordinator to switch the pool, and waits for it.
		coord, err := queue.NewCoordinator(queue.CoordinatorOptions{
			Client: client, Prefix: o.Prefix, Pools: PoolSpecs(cfg), Logger: log.With("component", "switcher"),
		})
		if err != nil {
			return err
		}
		switcher = coord
		// First, unlike medic serve: this coordinator is not run, so the
		// new pools take effect at no moment of their own, and SetPools is
		// the step that can refuse the configuration; refused here, nothing
		// has changed.
		rl.apply = append(rl.apply, func(_ context.Context, c *hcl.Config) error { return coord.SetPools(PoolSpecs(c)) })
		store = jobs.NewRunStore(client, jobs.StoreOptions{Keys: jobs.Keys{Prefix: o.Prefix}})
	}

	node, consumer, err := newNode(nodeParts{
		Name: o.NodeName, Config: cfg, Client: client, Prefix: o.Prefix, Store: store, Switcher: switcher,
		Registry: reg, Runs: runs, Metrics: jobs.NewMetrics(reg, runs),
		StopGrace: o.StopGrace, CPUWindow: o.CPUWindow, RuntimeDir: o.RuntimeDir, Log: log,
		Concurrency: o.Jobs,
	})
	if err != nil {
		return err
	}
	rl.apply = append(rl.apply, node.ApplyConfig)

	mux := http.NewServeMux()
	mux.Handle("POST /-/reload", exporter.CrossOriginGuard(rl))
	if o.EnablePprof {
		MountPprof(mux)
	}
	// The node's own paths, not a catch-all: a wrong method on any of them
	// (GET /-/reload, POST /metrics) is a 405 with Allow, not a 404.
	nh := node.Handler()
	for _, p := range []string{"/metrics", "/api/v1/heartbeats/", "/api/v1/agents", "/-/healthy"} {
		mux.Handle(p, nh)
	}
	hs, err := listen(o.ListenAddresses, mux, o.Timeouts)
	if err != nil {
		return err
	}
	cleanups.add(hs.close)

	// Started in the reverse order of stopping: the cleanups stop HTTP
	// first, then the reloader (no request waits on it any more), then
	// the job consumer, then the node and its agents; Redis closes last.
	errs := newFirstError()
	cleanups.add(startNode(ctx, node, consumer,
		func(err error) { errs.report(fmt.Errorf("node stopped: %v", err)) },
		func(err error) { log.Error("job consumer stopped", "err", err) }))
	reloadCtx, stopReloads := context.WithCancel(context.WithoutCancel(ctx))
	var reloads sync.WaitGroup
	reloads.Go(func() { rl.run(reloadCtx) })
	cleanups.add(func() { stopReloads(); reloads.Wait() })
	hs.serve(o.ListenAddresses, o.WebConfigFile, log, func(err error) {
		log.Error("HTTP server failed", "err", err)
		errs.report(err)
	})
	cleanups.add(hs.shutdown)

	log.Info("medic node is up", "node", o.NodeName, "listen", hs.Addrs, "agents", len(cfg.AgentsForNode(o.NodeName)))
	if o.OnListening != nil {
		o.OnListening(hs.Addrs)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

// nodeParts are what a node is built from: `medic node` takes them from
// its flags, `medic serve` shares the bridge's.
type nodeParts struct {
	Name   string
	Config *hcl.Config
	// Client is the estate's Redis. nil (medic node without --redis.url):
	// the per-agent lease is in-process, watchdog run records are only
	// logged and there is no job consumer.
	Client redis.UniversalClient
	Prefix string
	// Controls is the shared pause, approval, budget, circuit and
	// concurrency state; nil: a store on Client (none without Client).
	Controls *controls.Store
	Store    *jobs.RunStore
	Switcher runbooks.Switcher
	Registry *prometheus.Registry
	// Runs are the remediation metrics, shared by the engine and the
	// consumer; Metrics are the job consumer's own.
	Runs        *runbooks.Metrics
	Metrics     *jobs.Metrics
	Concurrency int
	StopGrace   time.Duration
	CPUWindow   time.Duration
	RuntimeDir  string
	Log         *slog.Logger
}

// newNode builds the node (supervisor, exporter, heartbeat API, watchdog),
// the engine that serves its watchdog and its jobs, and the job consumer
// that reads the stream medic:{node:NAME}:jobs the bridge routes alerts
// to. Nothing runs yet.
func newNode(p nodeParts) (*exporter.Node, *jobs.Consumer, error) {
	var locker runbooks.Locker = runbooks.NewMemoryLocker()
	var onRecord, onProgress func(*runbooks.RunRecord)
	ctl := p.Controls
	// A fresh id per process start: the leases this process takes name
	// it, so that the next incarnation takes them over at once.
	incarnation := runbooks.NewIncarnation()
	if p.Client != nil {
		rl := runbooks.NewRedisLocker(p.Client, p.Prefix).WithLogger(p.Log).WithIncarnation(p.Name, incarnation)
		locker = rl
		// Published now (and, if Redis is down, before the first lease):
		// leases of an earlier incarnation are then provably gone.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := rl.Publish(ctx); err != nil {
			p.Log.Warn("could not publish the node's incarnation yet; it is published with the first lease", "err", err)
		}
		// The node is live from now on: the bridge routes its alerts
		// (an alert that comes before the first state snapshot would
		// otherwise find the node unknown, and unroutable).
		if err := p.Client.Set(ctx, keys.Seen(keys.Prefix(p.Prefix), p.Name), time.Now().UnixMilli(), 0).Err(); err != nil {
			p.Log.Warn("could not mark the node live yet; it is marked with its first state snapshot", "err", err)
		}
		cancel()
		onRecord = saveRecords(p.Store, p.Log)
		if ctl == nil {
			ctl = controls.New(p.Client, p.Prefix)
		}
		// The intermediate records (pending_approval) of the watchdog's
		// runs, so that operators find them; the job consumer stores
		// those of alert runs itself (Request.Progress).
		onProgress = func(rec *runbooks.RunRecord) {
			if rec.Trigger != runbooks.TriggerAlert {
				onRecord(rec)
			}
		}
	}
	node, err := exporter.New(exporter.Options{
		Config: p.Config, NodeName: p.Name, Logger: p.Log.With("component", "node"),
		Registerer: p.Registry, Gatherer: p.Registry, Redis: p.Client, RedisPrefix: p.Prefix,
		OnRecord: onRecord, StopGrace: p.StopGrace, CPUWindow: p.CPUWindow, RuntimeDir: p.RuntimeDir,
	})
	if err != nil {
		return nil, nil, err
	}
	// The engine needs the node (its Agents) and the node needs the engine
	// (its watchdog's runner); both read the configuration the node holds,
	// so a reload reaches them together.
	engine := runbooks.New(runbooks.Options{
		Config: node.Config, Node: p.Name, Agents: node, Locker: locker, Switcher: p.Switcher, Incarnation: incarnation,
		Logger: p.Log.With("component", "engine"), Registerer: p.Registry, Metrics: p.Runs,
		Controls: ctl, Progress: onProgress,
	})
	node.SetRunner(engine)
	if p.Client == nil {
		return node, nil, nil
	}
	consumer := jobs.NewConsumer(jobs.ConsumerOptions{
		Client: p.Client, Keys: jobs.Keys{Prefix: p.Prefix}, Node: p.Name, Runner: engine, Store: p.Store,
		Concurrency: p.Concurrency, Logger: p.Log.With("component", "consumer"), Metrics: p.Metrics,
	})
	return node, consumer, nil
}

// agentsStartWait bounds how long the job consumer waits for the node's
// supervised agents to be started (an agent that cannot start does not
// hold the jobs back longer).
const agentsStartWait = 3 * time.Second

// waitAgentsStarted returns once every supervised agent of node is alive,
// or after max, or when ctx ends.
func waitAgentsStarted(ctx context.Context, node *exporter.Node, max time.Duration) {
	deadline := time.Now().Add(max)
	for _, a := range node.Config().AgentsForNode(node.Name()) {
		if !a.Supervised() {
			continue
		}
		for {
			if alive, _, err := node.Alive(ctx, a.Name); err == nil && alive {
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return
			}
			t := time.NewTimer(20 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// startNode runs the job consumer and the node until stop. The node's
// context is not ctx: at shutdown the consumer stops first, so that jobs
// in flight finish (or are handed back) while their agents still run, and
// only then the node, which stops its agents. nodeFailed and
// consumerFailed hear an error that ends one of them early. stop is
// idempotent.
func startNode(ctx context.Context, node *exporter.Node, consumer *jobs.Consumer, nodeFailed, consumerFailed func(error)) (stop func()) {
	consumerCtx, stopConsumer := context.WithCancel(ctx)
	nodeCtx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
	var consumerDone, nodeDone sync.WaitGroup
	nodeDone.Go(func() {
		if err := node.Run(nodeCtx); err != nil {
			nodeFailed(err)
		}
	})
	if consumer != nil {
		consumerDone.Go(func() {
			// Jobs left pending by the previous incarnation run first: let
			// the node start its agents before, so that a redelivered run
			// finds its agent as it is, not as not yet started.
			waitAgentsStarted(consumerCtx, node, agentsStartWait)
			if err := consumer.Run(consumerCtx); err != nil {
				consumerFailed(err)
			}
		})
	}
	return sync.OnceFunc(func() {
		stopConsumer()
		consumerDone.Wait()
		stopNode()
		nodeDone.Wait()
	})
}
