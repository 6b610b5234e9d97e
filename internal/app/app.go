// Package app assembles medic's long-running commands from the library
// packages: `medic bridge` (webhook, run records, pool API and
// coordinator), `medic serve` (the bridge plus a node: supervisor, engine
// and job consumer, in one process) and `medic demo` (serve on a bundled
// estate). cmd/medic only parses flags and calls Run or RunDemo, so tests
// start and stop the whole thing in-process on 127.0.0.1:0.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/bridge"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/controls"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/queue"
	"github.com/medicops/medic/runbooks"
)

// Options are what the bridge, serve and demo commands configure.
type Options struct {
	// ConfigFile is --config.file: an HCL file or a directory of them.
	ConfigFile string
	// RedisURL is --redis.url. Empty is allowed only with Node set (medic
	// serve): an embedded, non-durable store is used.
	RedisURL string
	// Prefix is the Redis key prefix (default "medic:").
	Prefix string

	ListenAddresses []string
	WebConfigFile   string
	TokenFile       string
	// EnablePprof is --web.enable-pprof: serve net/http/pprof under
	// /debug/pprof/.
	EnablePprof bool

	MaxBody     int64
	DedupTTL    time.Duration
	JobDeadline time.Duration
	// NodeSilence is --bridge.node-silence (bridge.Options.NodeSilence).
	NodeSilence  time.Duration
	RunRetention time.Duration
	MaxRuns      int

	// Node, when set, also runs a node of that name in this process: the
	// supervisor and exporter, the engine and the job consumer (medic
	// serve). Its heartbeat API is served on the bridge's address.
	Node string
	// Concurrency bounds the jobs the node runs at once.
	Concurrency int

	Logger *slog.Logger
	// Registry, when set, is the registry /metrics serves (tests read it).
	Registry *prometheus.Registry
	// OnListening is called with the bound addresses once serving.
	OnListening func(addrs []string)
	// Mount, when set, adds handlers to the bridge's mux before it serves
	// (medic demo's device). Its patterns must not overlap the bridge's.
	Mount func(mux *http.ServeMux)
	// Timeouts of the HTTP server; zero: DefaultServerTimeouts.
	Timeouts ServerTimeouts
}

// ShutdownTimeout bounds each stage of shutdown.
const ShutdownTimeout = 10 * time.Second

// Run runs until ctx ends, then shuts down in reverse order of start: stop
// taking requests, let jobs in flight finish (or hand them back), stop
// the node's agents and the coordinator, close Redis.
func Run(ctx context.Context, o Options) (err error) {
	if o.Prefix == "" {
		o.Prefix = keys.DefaultPrefix
	}
	if len(o.ListenAddresses) == 0 {
		o.ListenAddresses = []string{":9095"}
	}
	var cleanups cleanupList
	defer func() { cleanups.run() }()
	// The flags first: a bad --web.config.file or an unauthenticated
	// webhook beyond loopback is refused before anything starts.
	token, err := readToken(o.TokenFile)
	if err != nil {
		return err
	}
	webUsers, webAuthed, err := checkExposure(o.ListenAddresses, token != "", o.WebConfigFile)
	if err != nil {
		return err
	}
	log, cfg, load, err := begin(o.Logger, o.ConfigFile)
	if err != nil {
		return err
	}
	warnTokenFileMode(log, o.TokenFile)

	var client redis.UniversalClient
	switch {
	case o.RedisURL != "":
		client, err = redisx.New(o.RedisURL)
		if err != nil {
			return err
		}
		cleanups.add(func() { client.Close() })
		pingRedis(ctx, client, o.RedisURL, log)
	case o.Node != "":
		c, _, closeStore, err := redisx.Embedded()
		if err != nil {
			return err
		}
		client = c
		cleanups.add(closeStore)
		log.Warn("no --redis.url: using an embedded in-memory store; jobs, run records and pool state are NOT durable and are lost when medic exits")
	default:
		return errors.New("--redis.url is required")
	}

	reg := processRegistry(o.Registry)
	keys := jobs.Keys{Prefix: o.Prefix}
	// The remediation metrics, once for the bridge, the node's consumer
	// and its engine (medic serve): one owner, runbooks.
	runs := runbooks.NewMetrics(reg)
	metrics := bridge.NewMetrics(reg, runs)
	store := jobs.NewRunStore(client, jobs.StoreOptions{Keys: keys, Retention: o.RunRetention, MaxRuns: o.MaxRuns})
	rl := newReloader(cfg, load, log)
	rl.register(reg)
	// Pauses, approvals, budgets, circuits and concurrency slots: one
	// state in Redis for the bridge's API and every engine.
	ctl := controls.New(client, o.Prefix)
	configured := func() []string { return runbookNames(rl.Config()) }
	reg.MustRegister(controls.NewPausedCollector(ctl, configured, log.With("component", "controls")))

	// Pools: publisher, API and the leased coordinator.
	qm := queue.NewMetrics(reg)
	agents := map[string][]string{}
	for _, p := range cfg.Pools {
		agents[p.Name] = p.Agents
	}
	coord, err := queue.NewCoordinator(queue.CoordinatorOptions{
		Client: client, Prefix: o.Prefix, Pools: PoolSpecs(cfg), Logger: log.With("component", "coordinator"), Metrics: qm, Registerer: reg,
	})
	if err != nil {
		return err
	}
	pub := queue.NewPublisher(queue.PublisherOptions{Client: client, Prefix: o.Prefix, Agents: agents, Metrics: qm})

	// The fleet view (GET /api/v1/agents and the status page's agents):
	// one reading of the node snapshots serves both. In serve, the
	// in-process node is shown live rather than from its last snapshot.
	var node *exporter.Node
	fleet := bridge.NewFleet(bridge.FleetOptions{Redis: client, Keys: keys, Live: func() (exporter.NodeState, bool) {
		if node == nil {
			return exporter.NodeState{}, false
		}
		return node.State(), true
	}})
	b := bridge.New(bridge.Options{
		Client: client, Keys: keys, Config: rl.Config, Reload: rl.Reload, Store: store, Controls: ctl, Token: token, WebUsers: webUsers, Fleet: fleet,
		MaxBody: o.MaxBody, DedupTTL: o.DedupTTL, JobDeadline: o.JobDeadline, NodeSilence: o.NodeSilence,
		Logger: log.With("component", "bridge"), Metrics: metrics,
	})
	cleanups.add(b.Close)

	mux := http.NewServeMux()
	b.Register(mux)
	if o.EnablePprof {
		MountPprof(mux)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError}))
	mux.Handle("/api/v1/pools/", bridgeAuth(b, queue.NewAPI(queue.APIOptions{Publisher: pub, Coordinator: coord, Logger: log, Who: operatorName, CheckDevice: checkDevice(rl.Config)})))
	mux.Handle(bridge.StatusPagePattern, b.Page(bridge.NewStatusPage(bridge.StatusOptions{
		Runs: store, Redis: client, Keys: keys, Fleet: fleet, Controls: ctl, Runbooks: configured, Logger: log,
		Plan:  func(rec *runbooks.RunRecord) []string { return bridge.PlannedSteps(rl.Config(), rec) },
		Pools: func(ctx context.Context) ([]bridge.PoolStatus, error) { return poolStatus(ctx, client, coord) },
	})))

	if o.Mount != nil {
		o.Mount(mux)
	}

	// The node, for medic serve.
	var consumer *jobs.Consumer
	if o.Node != "" {
		node, consumer, err = newNode(nodeParts{
			Name: o.Node, Config: cfg, Client: client, Prefix: o.Prefix, Controls: ctl, Store: store, Switcher: coord,
			Registry: reg, Runs: runs, Metrics: jobs.NewMetrics(reg, runs), Concurrency: o.Concurrency, Log: log,
		})
		if err != nil {
			return err
		}
		rl.apply = append(rl.apply, node.ApplyConfig)
		warnOpenHeartbeats(o.ListenAddresses, token != "", webAuthed, log)
		// GET /api/v1/agents is the bridge's fleet view, which shows
		// this node live (above).
		mux.Handle("/api/v1/heartbeats/", node.Handler())
	}

	// Last, because SetPools takes effect at once: every other component
	// has accepted the new configuration by then.
	rl.apply = append(rl.apply, func(_ context.Context, c *hcl.Config) error { return coord.SetPools(PoolSpecs(c)) })

	hs, err := listen(o.ListenAddresses, mux, o.Timeouts)
	if err != nil {
		return err
	}
	serveErr := newFirstError()
	fail := serveErr.report
	hs.serve(o.ListenAddresses, o.WebConfigFile, log, fail)
	addrs := hs.Addrs

	// Background components, each stopped in order below.
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	start := func(name string, ctx context.Context, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				log.Error(name+" stopped", "err", err)
				fail(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	stopNode := func() {}
	if node != nil {
		stopNode = startNode(runCtx, node, consumer,
			func(err error) { fail(fmt.Errorf("node: %w", err)) },
			func(err error) { fail(fmt.Errorf("job consumer: %w", err)) })
	}
	defer stopNode()
	start("coordinator", runCtx, coord.Run)
	// The job deadline: jobs no node took in time are recorded expired
	// and escalated (jobs/reclaim.go).
	wg.Go(func() { b.RunReclaim(runCtx) })
	wg.Go(func() { rl.run(runCtx) })

	log.Info("medic is up", "listen", strings.Join(addrs, ","), "node", o.Node, "auth", authMode(token, o.WebConfigFile))
	if o.OnListening != nil {
		o.OnListening(addrs)
	}
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}

	log.Info("shutting down")
	hs.shutdown() // stop taking webhooks
	stopAll()
	stopNode() // jobs in flight finish or are handed back, then the node stops its agents
	wg.Wait()
	return err
}

func runbookNames(cfg *hcl.Config) []string {
	if cfg == nil {
		return nil
	}
	names := make([]string, 0, len(cfg.Runbooks))
	for _, rb := range cfg.Runbooks {
		names = append(names, rb.Name)
	}
	return names
}

func authMode(token, webConfig string) string {
	switch {
	case token != "" && webConfig != "":
		return "bearer token + web config"
	case token != "":
		return "bearer token"
	case webConfig != "":
		return "web config"
	}
	return "none (loopback only)"
}

// bridgeAuth puts the bridge's authentication in front of an API mounted
// beside it: Read for GET and HEAD, Write (which also refuses cross-origin
// browser requests) for every other method.
func bridgeAuth(b *bridge.Bridge, h http.Handler) http.Handler {
	read, write := b.Read(h), jsonFirst(b.Write(h))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			read.ServeHTTP(w, r)
			return
		}
		write.ServeHTTP(w, r)
	})
}

// checkDevice refuses, at publish, a device ID that the pool's device_url
// (in the configuration loaded now) cannot address.
func checkDevice(config func() *hcl.Config) func(pool, device string) error {
	return func(pool, device string) error {
		if cfg := config(); cfg != nil {
			if p := cfg.Pool(pool); p != nil {
				return p.CheckDevice(device)
			}
		}
		return nil
	}
}

func poolStatus(ctx context.Context, c redis.UniversalClient, coord *queue.Coordinator) ([]bridge.PoolStatus, error) {
	var out []bridge.PoolStatus
	for _, name := range coord.Pools() {
		k, _ := coord.Keys(name)
		st, err := queue.ReadStatus(ctx, c, k)
		ps := bridge.PoolStatus{
			Pool: name, Agent: st.Agent, Status: st.Status, Lock: st.Lock, Epoch: st.Epoch,
			Backlog: st.Backlog, Buffer: st.Buffer, Switchovers: st.Switchovers,
		}
		if err != nil {
			ps.Error = err.Error()
		}
		for _, a := range st.Agents {
			ps.Agents = append(ps.Agents, bridge.PoolAgent{ID: a.ID, Healthy: a.Healthy, HeartbeatAge: a.Age})
		}
		if err == nil {
			ps.Blocked, ps.BlockedTotal, ps.Error = blockedDevices(ctx, c, k)
		}
		out = append(out, ps)
	}
	return out, nil
}

func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--bridge.token-file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("--bridge.token-file %s is empty", path)
	}
	return tok, nil
}
