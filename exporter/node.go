package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/execx"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/runbooks"
)

// Defaults of Options.
const (
	DefaultStopGrace        = 5 * time.Second
	DefaultCPUWindow        = 200 * time.Millisecond
	DefaultLogMaxBytes      = 10 << 20
	DefaultCheckInterval    = 25 * time.Millisecond
	DefaultStateInterval    = 5 * time.Second
	DefaultStateTTL         = 30 * time.Second
	DefaultSampleTTL        = 2 * time.Second
	DefaultWatchdogDebounce = 250 * time.Millisecond
	DefaultStartWait        = 2 * time.Second
)

// Options are the dependencies and knobs of a Node. Config and NodeName are
// required.
type Options struct {
	Config   *hcl.Config
	NodeName string
	Logger   *slog.Logger
	// Registerer receives the node's collector; nil registers nothing.
	// Gatherer serves /metrics; nil uses Registerer when it is a Gatherer.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Redis, when set, receives the node state snapshot every
	// StateInterval (medic:nodes, medic:node:NAME:state).
	Redis       redis.UniversalClient
	RedisPrefix string
	// Runner serves watchdog runs (normally the *runbooks.Engine). nil
	// makes the watchdog restart the agent directly.
	Runner runbooks.Runner
	// OnRecord receives the record of every watchdog run.
	OnRecord func(*runbooks.RunRecord)
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// StopGrace is how long a stopped agent's process group gets between
	// SIGTERM and SIGKILL.
	StopGrace time.Duration
	// CPUWindow is the window Usage measures CPU over.
	CPUWindow time.Duration
	// RuntimeDir holds the NOTIFY_SOCKETs and the working directories of
	// agents without a workdir; empty makes a temporary one.
	RuntimeDir string
	// LogMaxBytes caps each of a supervised agent's stdout and stderr log
	// files; the full file is rotated to NAME.1.
	LogMaxBytes int64
	// CheckInterval is how often heartbeats are checked for being overdue.
	CheckInterval time.Duration
	// StateInterval is how often the Redis state snapshot is written.
	StateInterval time.Duration
	// SampleTTL is how long a scrape reuses /proc readings.
	SampleTTL time.Duration
	// WatchdogDebounce is the least time between two watchdog runs of one
	// agent.
	WatchdogDebounce time.Duration
	// StartWait bounds how long Restart waits for the new process to pass
	// its probe (or, without one, to be alive), so the engine's first
	// verify attempt sees a started agent rather than one still binding
	// its port. The restart succeeds either way; verify judges.
	StartWait time.Duration
	// DisableProbeLoop stops the periodic probes (benchmarks of the scrape).
	DisableProbeLoop bool
}

// Node watches the agents of one node.
type Node struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	cfg      atomic.Pointer[hcl.Config]
	reloadMu sync.Mutex

	mu     sync.RWMutex
	agents map[string]*agent
	names  []string // sorted

	// running is set by Run; agents added before it are started by Run.
	runMu      sync.Mutex
	runCtx     context.Context
	runtimeDir string
	ownRuntime bool
	wg         sync.WaitGroup

	sampleMu sync.Mutex
	table    *procTable
	memTotal uint64
	boot     time.Time

	collector *nodeCollector
}

var _ runbooks.Agents = (*Node)(nil)

// ErrUnknownAgent is returned for an agent this node does not run.
var ErrUnknownAgent = errors.New("unknown agent")

// New builds a node from opts. Nothing runs until Run.
func New(opts Options) (*Node, error) {
	if opts.Config == nil {
		return nil, errors.New("exporter: no config")
	}
	if opts.NodeName == "" {
		return nil, errors.New("exporter: no node name")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RedisPrefix == "" {
		opts.RedisPrefix = keys.DefaultPrefix
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.StopGrace, DefaultStopGrace)
	def(&opts.CPUWindow, DefaultCPUWindow)
	def(&opts.CheckInterval, DefaultCheckInterval)
	def(&opts.StateInterval, DefaultStateInterval)
	def(&opts.SampleTTL, DefaultSampleTTL)
	if opts.StartWait < 0 {
		opts.StartWait = 0
	} else if opts.StartWait == 0 {
		opts.StartWait = DefaultStartWait
	}
	if opts.WatchdogDebounce < 0 {
		opts.WatchdogDebounce = 0
	} else if opts.WatchdogDebounce == 0 {
		opts.WatchdogDebounce = DefaultWatchdogDebounce
	}
	if opts.LogMaxBytes <= 0 {
		opts.LogMaxBytes = DefaultLogMaxBytes
	}
	if opts.Gatherer == nil {
		if g, ok := opts.Registerer.(prometheus.Gatherer); ok {
			opts.Gatherer = g
		}
	}
	boot, err := bootTime()
	if err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	memTotal, _, err := memInfo()
	if err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	n := &Node{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		agents:   map[string]*agent{},
		boot:     boot,
		memTotal: memTotal,
	}
	n.cfg.Store(opts.Config)
	for _, def := range opts.Config.AgentsForNode(opts.NodeName) {
		n.addAgent(def)
	}
	n.collector = newNodeCollector(n)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(n.collector); err != nil {
			return nil, fmt.Errorf("exporter: register collector: %w", err)
		}
	}
	return n, nil
}

// SetRunner sets the runner of watchdog runs. The engine needs the node
// (as its Agents) and the node needs the engine, so one of them is set
// after construction; call it before Run.
func (n *Node) SetRunner(r runbooks.Runner) {
	n.runMu.Lock()
	n.opts.Runner = r
	n.runMu.Unlock()
}

func (n *Node) runner() runbooks.Runner {
	n.runMu.Lock()
	defer n.runMu.Unlock()
	return n.opts.Runner
}

// Config is the configuration in force (for the engine's Options.Config).
func (n *Node) Config() *hcl.Config { return n.cfg.Load() }

// Name is the node's name.
func (n *Node) Name() string { return n.opts.NodeName }

func (n *Node) addAgent(def *hcl.Agent) *agent {
	a := newAgent(n, def)
	n.mu.Lock()
	n.agents[def.Name] = a
	n.names = append(n.names, def.Name)
	slices.Sort(n.names)
	n.mu.Unlock()
	return a
}

func (n *Node) agent(name string) (*agent, error) {
	n.mu.RLock()
	a := n.agents[name]
	n.mu.RUnlock()
	if a == nil {
		return nil, fmt.Errorf("%w %q on node %s", ErrUnknownAgent, name, n.opts.NodeName)
	}
	return a, nil
}

// list returns the agents in name order.
func (n *Node) list() []*agent {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*agent, 0, len(n.names))
	for _, name := range n.names {
		out = append(out, n.agents[name])
	}
	return out
}

// Run starts the supervised agents, the probes, the heartbeat checker and
// the state snapshot, and blocks until ctx ends. Then it stops every
// supervised agent (whole process group) and returns.
func (n *Node) Run(ctx context.Context) error {
	n.runMu.Lock()
	if n.runCtx != nil {
		n.runMu.Unlock()
		return errors.New("exporter: node already running")
	}
	dir := n.opts.RuntimeDir
	if dir == "" {
		d, err := os.MkdirTemp("", "medic-node-")
		if err != nil {
			n.runMu.Unlock()
			return fmt.Errorf("exporter: runtime dir: %w", err)
		}
		dir, n.ownRuntime = d, true
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		n.runMu.Unlock()
		return fmt.Errorf("exporter: runtime dir: %w", err)
	}
	n.runtimeDir = dir
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.runCtx = runCtx
	agents := n.list()
	n.runMu.Unlock()

	if n.opts.Redis != nil {
		// Before any script of this incarnation runs: kill what the last
		// one's scripts left running, then record this one's (groups.go).
		g := newScriptGroups(n.opts.Redis, n.opts.RedisPrefix, n.opts.NodeName, n.log)
		kctx, kcancel := context.WithTimeout(runCtx, 5*time.Second)
		if _, err := g.killLeftovers(kctx); err != nil {
			n.log.Warn("scripts of the node's last incarnation not checked", "err", err)
		}
		kcancel()
		defer execx.SetGroupTracker(g)()
	}
	for _, a := range agents {
		n.startAgent(runCtx, a)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.checkLoop(runCtx)
	}()
	if n.opts.Redis != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.stateLoop(runCtx)
		}()
	}
	n.log.Info("node running", "node", n.opts.NodeName, "agents", len(agents), "runtime_dir", dir)

	<-ctx.Done()
	cancel()

	// Stop taking new work (watchdog, probes), then the children.
	var stopWG sync.WaitGroup
	for _, a := range n.list() {
		stopWG.Add(1)
		go func() {
			defer stopWG.Done()
			a.shutdown()
		}()
	}
	stopWG.Wait()
	n.wg.Wait()
	if n.ownRuntime {
		os.RemoveAll(dir)
	}
	n.log.Info("node stopped", "node", n.opts.NodeName)
	return nil
}

// startAgent begins watching one agent: its probe loop, its notify socket
// and, for a supervised agent, its process.
func (n *Node) startAgent(ctx context.Context, a *agent) {
	actx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.cancel = cancel
	a.ctx = actx
	a.mu.Unlock()
	if a.def().Supervised() {
		if err := a.openNotify(n.runtimeDir); err != nil {
			n.log.Warn("notify socket", "agent", a.name, "err", err)
		}
		if err := a.spawn(); err != nil {
			n.log.Error("start agent", "agent", a.name, "err", err)
			// A child that cannot start is down; the watchdog treats it like
			// a crash so the runbook's budget and escalation apply.
			n.trigger(a, alertDown, "start failed: "+err.Error())
		}
	}
	if !n.opts.DisableProbeLoop {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			a.probeLoop(actx)
		}()
	}
}

// checkLoop finds heartbeats that went overdue and hands them to the
// watchdog, once per overdue episode.
func (n *Node) checkLoop(ctx context.Context) {
	t := time.NewTicker(n.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := n.now()
		for _, a := range n.list() {
			a.preSample(now, n.opts.CPUWindow)
			if detail, newly := a.overdueEpisode(now); newly {
				n.log.Warn("heartbeat overdue", "agent", a.name, "detail", detail)
				n.trigger(a, alertHeartbeat, detail)
			}
		}
	}
}

// ApplyConfig swaps in cfg: new agents start, removed ones stop, changed
// ones take their new definition (a changed command applies from the next
// restart). Reading and validating the configuration is the caller's job
// (medic node and medic serve reload through package app).
func (n *Node) ApplyConfig(_ context.Context, cfg *hcl.Config) error {
	if cfg == nil {
		return errors.New("reload: nil config")
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	want := map[string]*hcl.Agent{}
	for _, def := range cfg.AgentsForNode(n.opts.NodeName) {
		want[def.Name] = def
	}
	n.cfg.Store(cfg)

	n.runMu.Lock()
	runCtx := n.runCtx
	n.runMu.Unlock()
	var removed []*agent
	n.mu.Lock()
	for name, a := range n.agents {
		// An agent that changed from supervised to pidfile (or back) is a
		// different thing to watch: it is removed and added again.
		if def, ok := want[name]; ok && def.Supervised() == a.def().Supervised() {
			a.setDef(def)
			delete(want, name)
			continue
		}
		removed = append(removed, a)
		delete(n.agents, name)
		n.names = slices.DeleteFunc(n.names, func(s string) bool { return s == name })
	}
	n.mu.Unlock()
	for _, a := range removed {
		n.log.Info("agent removed by reload", "agent", a.name)
		a.shutdown()
	}
	for _, def := range want {
		a := n.addAgent(def)
		n.log.Info("agent added by reload", "agent", a.name)
		if runCtx != nil && runCtx.Err() == nil {
			n.startAgent(runCtx, a)
		}
	}
	n.log.Info("configuration reloaded", "agents", len(n.list()))
	return nil
}

// Alive implements runbooks.Agents.
func (n *Node) Alive(_ context.Context, name string) (bool, string, error) {
	a, err := n.agent(name)
	if err != nil {
		return false, "", err
	}
	alive, detail, _ := a.alive()
	return alive, detail, nil
}

// Probe implements runbooks.Agents: a registered, overdue heartbeat fails
// it; otherwise the agent's probe runs now.
func (n *Node) Probe(ctx context.Context, name string) (bool, string, error) {
	a, err := n.agent(name)
	if err != nil {
		return false, "", err
	}
	res := a.probeNow(ctx)
	return res.OK, res.Detail, nil
}

// Usage implements runbooks.Agents.
func (n *Node) Usage(ctx context.Context, name string) (hcl.Usage, error) {
	a, err := n.agent(name)
	if err != nil {
		return hcl.Usage{}, err
	}
	return a.sampleUsage(ctx, n.opts.CPUWindow)
}

// Restart implements runbooks.Agents: stop the agent (whole process group,
// SIGTERM, grace, SIGKILL; or its stop argv) and start it again.
func (n *Node) Restart(ctx context.Context, name string) error {
	a, err := n.agent(name)
	if err != nil {
		return err
	}
	return a.restart(ctx)
}

// Heartbeat registers or beats name's heartbeat; timeout 0 keeps the
// registered one or takes the agent's configured one.
func (n *Node) Heartbeat(name string, timeout time.Duration) error {
	a, err := n.agent(name)
	if err != nil {
		return err
	}
	return a.beat(timeout, "http")
}

// Unregister drops name's heartbeat registration.
func (n *Node) Unregister(name string) error {
	a, err := n.agent(name)
	if err != nil {
		return err
	}
	a.unregister("http")
	return nil
}

// procs returns the shared /proc scan, at most SampleTTL old.
func (n *Node) procs() *procTable {
	n.sampleMu.Lock()
	defer n.sampleMu.Unlock()
	now := time.Now()
	if n.table == nil || now.Sub(n.table.at) >= n.opts.SampleTTL {
		t, err := scanProcs(now)
		if err != nil {
			n.log.Warn("scan /proc", "err", err)
			if n.table == nil {
				return &procTable{at: now, byPID: map[int]procStat{}}
			}
			return n.table
		}
		n.table = t
	}
	return n.table
}
