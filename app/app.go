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
	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/hcl"
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
	var cleanups cleanupList
	defer func() { cleanups.run() }()
	s, err := build(ctx, o, &cleanups)
	if err != nil {
		return err
	}
	if err := s.start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-s.serveErr:
	}
	s.stop()
	return err
}

// server is medic's bridge (and, in serve, its node) in three phases:
// build wires every component and starts nothing; start serves HTTP and
// runs the background components; stop undoes start in reverse order.
// What build acquired (Redis, the bridge's workers) is released by the
// cleanups, which run last.
type server struct {
	o        Options
	log      *slog.Logger
	cleanups *cleanupList

	token               string
	webUsers, webAuthed bool
	cfg                 *hcl.Config
	load                func() (*hcl.Config, error)

	client  redis.UniversalClient
	reg     *prometheus.Registry
	keys    jobs.Keys
	runs    *runbooks.Metrics
	metrics *bridge.Metrics
	store   *jobs.RunStore
	rl      *reloader
	ctl     *controls.Store
	coord   *queue.Coordinator
	pub     *queue.Publisher
	fleet   *bridge.Fleet
	b       *bridge.Bridge
	mux     *http.ServeMux

	// The node, for medic serve.
	node     *exporter.Node
	consumer *jobs.Consumer

	// Set by start.
	hs       *httpServer
	serveErr firstError
	stopAll  context.CancelFunc
	stopNode func()
	wg       sync.WaitGroup
}

// build checks the flags, connects to Redis and wires every component,
// starting none. What it acquires is added to cleanups.
func build(ctx context.Context, o Options, cleanups *cleanupList) (*server, error) {
	if o.Prefix == "" {
		o.Prefix = keys.DefaultPrefix
	}
	if len(o.ListenAddresses) == 0 {
		o.ListenAddresses = []string{":9095"}
	}
	s := &server{o: o, cleanups: cleanups}
	if err := s.checkFlags(); err != nil {
		return nil, err
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	if err := s.wire(); err != nil {
		return nil, err
	}
	s.routes()
	if err := s.addNode(); err != nil {
		return nil, err
	}
	// Last, because SetPools takes effect at once: every other component
	// has accepted the new configuration by then.
	s.rl.apply = append(s.rl.apply, func(_ context.Context, c *hcl.Config) error { return s.coord.SetPools(PoolSpecs(c)) })
	return s, nil
}

// checkFlags comes first: a bad --web.config.file or an unauthenticated
// webhook beyond loopback is refused before anything starts. Then the
// configuration is loaded.
func (s *server) checkFlags() (err error) {
	o := s.o
	if s.token, err = readToken(o.TokenFile); err != nil {
		return err
	}
	if s.webUsers, s.webAuthed, err = checkExposure(o.ListenAddresses, s.token != "", o.WebConfigFile); err != nil {
		return err
	}
	if s.log, s.cfg, s.load, err = begin(o.Logger, o.ConfigFile); err != nil {
		return err
	}
	warnTokenFileMode(s.log, o.TokenFile)
	return nil
}

// connect opens the estate's Redis, or (serve without --redis.url) an
// embedded store.
func (s *server) connect(ctx context.Context) error {
	o, log := s.o, s.log
	switch {
	case o.RedisURL != "":
		client, err := redisx.New(o.RedisURL)
		if err != nil {
			return err
		}
		s.client = client
		s.cleanups.add(func() { client.Close() })
		pingRedis(ctx, client, o.RedisURL, log)
	case o.Node != "":
		c, _, closeStore, err := redisx.Embedded()
		if err != nil {
			return err
		}
		s.client = c
		s.cleanups.add(closeStore)
		log.Warn("no --redis.url: using an embedded in-memory store; jobs, run records and pool state are NOT durable and are lost when medic exits")
	default:
		return errors.New("--redis.url is required")
	}
	return nil
}

// wire builds the bridge's components on the client: run store, reloader,
// controls, the pools' coordinator and publisher, the fleet view and the
// bridge itself.
func (s *server) wire() (err error) {
	o, log, client, cfg := s.o, s.log, s.client, s.cfg
	s.reg = processRegistry(o.Registry)
	reg := s.reg
	s.keys = jobs.Keys{Prefix: o.Prefix}
	// The remediation metrics, once for the bridge, the node's consumer
	// and its engine (medic serve): one owner, runbooks.
	s.runs = runbooks.NewMetrics(reg)
	s.metrics = bridge.NewMetrics(reg, s.runs)
	s.store = jobs.NewRunStore(client, jobs.StoreOptions{Keys: s.keys, Retention: o.RunRetention, MaxRuns: o.MaxRuns})
	s.rl = newReloader(cfg, s.load, log)
	s.rl.register(reg)
	// Pauses, approvals, budgets, circuits and concurrency slots: one
	// state in Redis for the bridge's API and every engine.
	s.ctl = controls.New(client, o.Prefix)
	reg.MustRegister(controls.NewPausedCollector(s.ctl, s.runbooks, log.With("component", "controls")))

	// Pools: publisher, API and the leased coordinator.
	qm := queue.NewMetrics(reg)
	agents := map[string][]string{}
	for _, p := range cfg.Pools {
		agents[p.Name] = p.Agents
	}
	s.coord, err = queue.NewCoordinator(queue.CoordinatorOptions{
		Client: client, Prefix: o.Prefix, Pools: PoolSpecs(cfg), Logger: log.With("component", "coordinator"), Metrics: qm, Registerer: reg,
	})
	if err != nil {
		return err
	}
	s.pub = queue.NewPublisher(queue.PublisherOptions{Client: client, Prefix: o.Prefix, Agents: agents, Metrics: qm})

	// The fleet view (GET /api/v1/agents and the status page's agents):
	// one reading of the node snapshots serves both. In serve, the
	// in-process node is shown live rather than from its last snapshot.
	s.fleet = bridge.NewFleet(bridge.FleetOptions{Redis: client, Keys: s.keys, Live: func() (exporter.NodeState, bool) {
		if s.node == nil {
			return exporter.NodeState{}, false
		}
		return s.node.State(), true
	}})
	s.b = bridge.New(bridge.Options{
		Client: client, Keys: s.keys, Config: s.rl.Config, Reload: s.rl.Reload, Store: s.store, Controls: s.ctl, Token: s.token, WebUsers: s.webUsers, Fleet: s.fleet,
		MaxBody: o.MaxBody, DedupTTL: o.DedupTTL, JobDeadline: o.JobDeadline, NodeSilence: o.NodeSilence,
		Logger: log.With("component", "bridge"), Metrics: s.metrics,
	})
	s.cleanups.add(s.b.Close)
	return nil
}

// runbooks are the names of the configured runbooks, as of now.
func (s *server) runbooks() []string { return runbookNames(s.rl.Config()) }

// routes mounts the bridge, /metrics, the pools' API and the status page.
func (s *server) routes() {
	o, log, client, reg, b := s.o, s.log, s.client, s.reg, s.b
	mux := http.NewServeMux()
	s.mux = mux
	b.Register(mux)
	if o.EnablePprof {
		MountPprof(mux)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError}))
	mux.Handle("/api/v1/pools/", bridgeAuth(b, queue.NewAPI(queue.APIOptions{Publisher: s.pub, Coordinator: s.coord, Logger: log, Who: operatorName, CheckDevice: checkDevice(s.rl.Config)})))
	mux.Handle(bridge.StatusPagePattern, b.Page(bridge.NewStatusPage(bridge.StatusOptions{
		Runs: s.store, Redis: client, Keys: s.keys, Fleet: s.fleet, Controls: s.ctl, Runbooks: s.runbooks, Logger: log,
		Plan:  func(rec *runbooks.RunRecord) []string { return bridge.PlannedSteps(s.rl.Config(), rec) },
		Pools: func(ctx context.Context) ([]bridge.PoolStatus, error) { return poolStatus(ctx, client, s.coord) },
	})))

	if o.Mount != nil {
		o.Mount(mux)
	}
}

// addNode builds the in-process node of medic serve (none without
// Options.Node) and serves its heartbeat API on the bridge's mux.
func (s *server) addNode() (err error) {
	o, log := s.o, s.log
	if o.Node == "" {
		return nil
	}
	s.node, s.consumer, err = newNode(nodeParts{
		Name: o.Node, Config: s.cfg, Client: s.client, Prefix: o.Prefix, Controls: s.ctl, Store: s.store, Switcher: s.coord,
		Registry: s.reg, Runs: s.runs, Metrics: jobs.NewMetrics(s.reg, s.runs), Concurrency: o.Concurrency, Log: log,
	})
	if err != nil {
		return err
	}
	s.rl.apply = append(s.rl.apply, s.node.ApplyConfig)
	warnOpenHeartbeats(o.ListenAddresses, s.token != "", s.webAuthed, log)
	// GET /api/v1/agents is the bridge's fleet view, which shows
	// this node live (above).
	s.mux.Handle("/api/v1/heartbeats/", s.node.Handler())
	return nil
}

// start listens and serves, then runs the background components: the
// node and its job consumer, the coordinator, the job deadline's reclaim
// loop and the reloader. An error that ends one of them early arrives on
// serveErr. The stops are also cleanups, in case Run leaves without stop.
func (s *server) start(ctx context.Context) error {
	o, log := s.o, s.log
	hs, err := listen(o.ListenAddresses, s.mux, o.Timeouts)
	if err != nil {
		return err
	}
	s.hs = hs
	s.serveErr = newFirstError()
	fail := s.serveErr.report
	hs.serve(o.ListenAddresses, o.WebConfigFile, log, fail)
	addrs := hs.Addrs

	// Background components, each stopped in order by stop.
	runCtx, stopAll := context.WithCancel(ctx)
	s.stopAll = stopAll
	s.cleanups.add(stopAll)
	run := func(name string, ctx context.Context, f func(context.Context) error) {
		s.wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				log.Error(name+" stopped", "err", err)
				fail(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	s.stopNode = func() {}
	if s.node != nil {
		s.stopNode = startNode(runCtx, s.node, s.consumer,
			func(err error) { fail(fmt.Errorf("node: %w", err)) },
			func(err error) { fail(fmt.Errorf("job consumer: %w", err)) })
	}
	s.cleanups.add(s.stopNode)
	run("coordinator", runCtx, s.coord.Run)
	// The job deadline: jobs no node took in time are recorded expired
	// and escalated (jobs/reclaim.go).
	s.wg.Go(func() { s.b.RunReclaim(runCtx) })
	s.wg.Go(func() { s.rl.run(runCtx) })

	log.Info("medic is up", "listen", strings.Join(addrs, ","), "node", o.Node, "auth", authMode(s.token, o.WebConfigFile))
	if o.OnListening != nil {
		o.OnListening(addrs)
	}
	return nil
}

// stop undoes start in reverse order: stop taking webhooks, end the
// background components, let jobs in flight finish or be handed back,
// then stop the node's agents.
func (s *server) stop() {
	s.log.Info("shutting down")
	s.hs.shutdown() // stop taking webhooks
	s.stopAll()
	s.stopNode() // jobs in flight finish or are handed back, then the node stops its agents
	s.wg.Wait()
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
