package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// PoolSpec is what the coordinator needs of a `pool` block.
type PoolSpec struct {
	Name string
	// Agents are the agents allowed to be active, in order of preference;
	// empty means any registered agent.
	Agents []string
	// CheckInterval is how often the active agent is checked (default 2s).
	CheckInterval time.Duration
}

// CoordinatorOptions configure a Coordinator.
type CoordinatorOptions struct {
	Client redis.UniversalClient
	// Prefix of every key; "" means keys.DefaultPrefix.
	Prefix string
	Pools  []PoolSpec
	// IdleLimit is how long the active agent's consumer may go without
	// reading its stream while configs are waiting in it before the agent
	// counts as stuck; default max(4 × check_interval, 5s).
	IdleLimit time.Duration
	// LeaseTTL is the coordinator lease's time to live; the holder renews
	// it several times per TTL; default max(3 × check_interval, 3s).
	LeaseTTL time.Duration
	// Batch is how many entries one migrate or drain script moves
	// (default 1000).
	Batch int
	// ID names this coordinator in logs and in the lease (default random).
	ID string

	Logger  *slog.Logger
	Metrics *Metrics
	// Registerer, when set, gets a collector that reads each pool's
	// backlog, buffer, epoch and lock at scrape time.
	Registerer prometheus.Registerer
}

// Coordinator checks each pool's active agent every check_interval and
// switches the pool to a healthy agent when it fails. One coordinator per
// pool acts at a time, whatever the number of bridges: the one holding the
// pool's lease. Every switchover step is fenced by that lease and by the
// pool's epoch, and its state lives in the control hash, so a coordinator
// that dies mid-way is resumed by the next lease holder; the lock is never
// cleared by a timeout.
type Coordinator struct {
	o CoordinatorOptions

	mu        sync.RWMutex
	pools     map[string]*poolCoord
	order     []string
	runCtx    context.Context // set while Run runs
	runCancel context.CancelCauseFunc
	wg        sync.WaitGroup

	// hook, when set (tests), runs before every switchover step; an error
	// makes the coordinator stop as if it had crashed (lease kept).
	hook func(pool, step string) error
}

type poolCoord struct {
	k     Keys
	token string
	kick  chan struct{}
	log   *slog.Logger
	cfg   atomic.Pointer[poolCfg] // replaced by SetPools
	stop  context.CancelFunc      // ends the pool's loop; set while it runs

	mu   sync.Mutex
	held bool
}

// poolCfg is a pool's spec with the defaults derived from it.
type poolCfg struct {
	spec     PoolSpec
	idle     time.Duration
	leaseTTL time.Duration
}

func (c *Coordinator) newCfg(spec PoolSpec) *poolCfg {
	if spec.CheckInterval <= 0 {
		spec.CheckInterval = 2 * time.Second
	}
	cfg := &poolCfg{spec: spec, idle: c.o.IdleLimit, leaseTTL: c.o.LeaseTTL}
	if cfg.idle <= 0 {
		cfg.idle = max(4*spec.CheckInterval, 5*time.Second)
	}
	if cfg.leaseTTL <= 0 {
		cfg.leaseTTL = max(3*spec.CheckInterval, 3*time.Second)
	}
	return cfg
}

func (p *poolCoord) spec() PoolSpec { return p.cfg.Load().spec }

// Errors of Trigger.
var (
	ErrUnknownPool = errors.New("unknown pool")
	ErrNoTarget    = errors.New("no healthy agent to switch to")
	ErrBadTarget   = errors.New("target not usable")
)

// errCrash is how a step hook stops a coordinator without a clean exit.
type errCrash struct{ err error }

func (e errCrash) Error() string { return "coordinator stopped by hook: " + e.err.Error() }

// NewCoordinator validates the pools and fills in defaults.
func NewCoordinator(o CoordinatorOptions) (*Coordinator, error) {
	if o.Client == nil {
		return nil, errors.New("coordinator needs a Redis client")
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.ID == "" {
		o.ID = randomToken()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Coordinator{o: o, pools: map[string]*poolCoord{}}
	if err := c.SetPools(o.Pools); err != nil {
		return nil, err
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(&statusCollector{c: c}); err != nil {
			return nil, err
		}
		if err := o.Registerer.Register(&deviceCollector{c: c}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SetPools replaces the set of pools (a config reload): new pools start
// being coordinated, removed ones stop (giving their lease back), and kept
// ones take the new agents list and check interval at their next check. It
// validates everything before changing anything.
func (c *Coordinator) SetPools(specs []PoolSpec) error {
	keys := map[string]Keys{}
	for _, spec := range specs {
		k, err := NewKeys(c.o.Prefix, spec.Name)
		if err != nil {
			return err
		}
		if _, dup := keys[spec.Name]; dup {
			return fmt.Errorf("pool %q listed twice", spec.Name)
		}
		keys[spec.Name] = k
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var order []string
	for _, spec := range specs {
		p := c.pools[spec.Name]
		if p == nil {
			p = &poolCoord{k: keys[spec.Name], token: c.o.ID + ":" + randomToken(),
				kick: make(chan struct{}, 1), log: c.o.Logger.With("pool", spec.Name)}
			c.pools[spec.Name] = p
			c.o.Metrics.initPool(spec.Name)
			p.cfg.Store(c.newCfg(spec))
			if c.runCtx != nil {
				c.startLocked(p)
			}
		} else {
			p.cfg.Store(c.newCfg(spec))
		}
		order = append(order, spec.Name)
	}
	for name, p := range c.pools {
		if _, keep := keys[name]; !keep {
			if p.stop != nil {
				p.stop()
			}
			delete(c.pools, name)
		}
	}
	c.order = order
	return nil
}

// Pools lists the pool names in configuration order.
func (c *Coordinator) Pools() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]string(nil), c.order...)
}

func (c *Coordinator) pool(name string) *poolCoord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pools[name]
}

// Keys returns the keys of a configured pool.
func (c *Coordinator) Keys(pool string) (Keys, bool) {
	p := c.pool(pool)
	if p == nil {
		return Keys{}, false
	}
	return p.k, true
}

// Run coordinates every pool until ctx ends, then gives the leases back.
func (c *Coordinator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("coordinator already running")
	}
	c.runCtx, c.runCancel = ctx, cancel
	for _, name := range c.order {
		c.startLocked(c.pools[name])
	}
	c.mu.Unlock()
	<-ctx.Done()
	c.mu.Lock()
	c.runCtx = nil
	c.mu.Unlock()
	c.wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// startLocked starts a pool's loop; c.mu is held and Run is running.
func (c *Coordinator) startLocked(p *poolCoord) {
	pctx, stop := context.WithCancel(c.runCtx)
	p.stop = stop
	cancelRun := c.runCancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := c.runPool(pctx, p); err != nil {
			cancelRun(err)
		}
	}()
}

func (c *Coordinator) runPool(ctx context.Context, p *poolCoord) error {
	nextCheck := time.Now()
	lastErr := ""
	for {
		tick := min(p.cfg.Load().leaseTTL/3, 200*time.Millisecond)
		if ctx.Err() != nil {
			var crash errCrash
			if errors.As(context.Cause(ctx), &crash) {
				return nil
			}
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			releaseScript.Run(rctx, c.o.Client, []string{p.k.Lease()}, p.token)
			cancel()
			return nil
		}
		held := c.renew(ctx, p)
		if held {
			locked, err := c.o.Client.HGet(ctx, p.k.Ctl(), "lock").Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				p.log.Warn("read pool control", "err", err)
			}
			var stepErr error
			if locked == "1" {
				stepErr = c.drive(ctx, p)
			} else if !time.Now().Before(nextCheck) {
				var wait time.Duration
				wait, stepErr = c.check(ctx, p)
				nextCheck = time.Now().Add(wait)
			}
			var crash errCrash
			if errors.As(stepErr, &crash) {
				return crash
			}
			switch {
			case stepErr != nil && ctx.Err() == nil && stepErr.Error() != lastErr:
				p.log.Warn("coordinator step", "err", stepErr)
				lastErr = stepErr.Error()
			case stepErr == nil:
				lastErr = ""
			}
		}
		wait := tick
		if held {
			wait = min(wait, max(time.Until(nextCheck), time.Millisecond))
		}
		select {
		case <-ctx.Done():
		case <-p.kick:
		case <-time.After(wait):
		}
	}
}

// renew takes or renews the pool's lease.
func (c *Coordinator) renew(ctx context.Context, p *poolCoord) bool {
	ok, err := leaseScript.Run(ctx, c.o.Client, []string{p.k.Lease()}, p.token, p.cfg.Load().leaseTTL.Milliseconds()).Int()
	held := err == nil && ok == 1
	p.mu.Lock()
	changed := held != p.held
	p.held = held
	p.mu.Unlock()
	switch {
	case changed && !held && err != nil:
		// Said once per outage, not once per tick.
		p.log.Warn("coordinator lease lost: cannot reach Redis; this pool is not checked or switched over until it is back",
			"coordinator", c.o.ID, "err", err)
	case changed:
		p.log.Info("coordinator lease", "held", held, "coordinator", c.o.ID)
	}
	return held
}

// check looks at the active agent once and starts a switchover when it is
// unhealthy. It returns when to check next: check_interval, or sooner when
// the agent's heartbeat expires before that, so that a dead agent is noticed
// within its heartbeat timeout rather than a whole interval later.
func (c *Coordinator) check(ctx context.Context, p *poolCoord) (time.Duration, error) {
	interval := p.spec().CheckInterval
	now, err := serverNowMs(ctx, c.o.Client, p.k.Ctl())
	if err != nil {
		return interval, err
	}
	v, err := c.o.Client.HMGet(ctx, p.k.Ctl(), "agent", "stream", "since_ms").Result()
	if err != nil {
		return interval, err
	}
	agent, stream := asString(v[0]), asString(v[1])
	since, _ := strconv.ParseInt(asString(v[2]), 10, 64)
	if agent == "" {
		n, err := c.o.Client.XLen(ctx, p.k.Buf()).Result()
		if err != nil || n == 0 {
			return interval, err
		}
		err = c.switchover(ctx, p, "", "", "activate: configs buffered and no active agent")
		if errors.Is(err, ErrNoTarget) {
			p.log.Debug("configs buffered and no healthy agent to activate")
			return interval, nil
		}
		return interval, err
	}
	raw, err := c.o.Client.HGet(ctx, p.k.Agents(), agent).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return interval, err
	}
	reg, registered := parseRegistration(raw)
	reason := ""
	switch {
	case !registered:
		reason = "not registered"
	case !reg.healthy(now):
		reason = fmt.Sprintf("heartbeat %dms old, timeout %dms", now-reg.lastMs, reg.timeoutMs)
	default:
		reason, err = c.idle(ctx, p, agent, stream, now-since)
		if err != nil {
			return interval, err
		}
	}
	if reason == "" {
		if until := time.Duration(reg.lastMs+reg.timeoutMs-now+5) * time.Millisecond; until > 0 && until < interval {
			return until, nil
		}
		return interval, nil
	}
	p.log.Warn("active agent unhealthy", "agent", agent, "reason", reason)
	err = c.switchover(ctx, p, agent, "", reason)
	if errors.Is(err, ErrNoTarget) {
		p.log.Error("active agent unhealthy and no healthy agent to switch to", "agent", agent)
		return interval, nil
	}
	return interval, err
}

// idle is the seed's "does the queue still have a consumer" check: with
// configs waiting, the agent's consumer must have read within the limit.
func (c *Coordinator) idle(ctx context.Context, p *poolCoord, agent, stream string, activeFor int64) (string, error) {
	limit := p.cfg.Load().idle
	if activeFor < limit.Milliseconds() {
		return "", nil
	}
	n, err := c.o.Client.XLen(ctx, stream).Result()
	if err != nil || n == 0 {
		return "", err
	}
	cs, err := c.o.Client.XInfoConsumers(ctx, stream, Group).Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") || strings.Contains(err.Error(), "no such key") {
			return fmt.Sprintf("%d configs waiting and no consumer group", n), nil
		}
		return "", err
	}
	for _, x := range cs {
		if x.Name == agent {
			if x.Idle > limit {
				return fmt.Sprintf("%d configs waiting, consumer idle %s", n, x.Idle.Round(time.Millisecond)), nil
			}
			return "", nil
		}
	}
	return fmt.Sprintf("%d configs waiting and no consumer %s", n, agent), nil
}

// switchover begins a switchover (lock, epoch+1, target) and drives it.
func (c *Coordinator) switchover(ctx context.Context, p *poolCoord, from, target, reason string) error {
	_, _, err := c.begin(ctx, p, p.token, from, target, reason)
	if err != nil {
		return err
	}
	return c.drive(ctx, p)
}

type beginResult struct {
	status, target, from string
	epoch                int64
}

func (c *Coordinator) begin(ctx context.Context, p *poolCoord, token, from, target, reason string) (beginResult, bool, error) {
	if err := c.step(p, "begin"); err != nil {
		return beginResult{}, false, err
	}
	res, err := beginScript.Run(ctx, c.o.Client, []string{p.k.Ctl(), p.k.Agents(), p.k.Lease()},
		token, from, target, strings.Join(p.spec().Agents, " "), p.k.InPrefix(), reason).Slice()
	if err != nil {
		return beginResult{}, false, err
	}
	r := beginResult{status: asString(res[0]), target: asString(res[1]), epoch: asInt(res[2]), from: asString(res[3])}
	switch r.status {
	case "ok":
		p.log.Info("switchover started", "from", r.from, "to", r.target, "epoch", r.epoch, "reason", reason)
		return r, true, nil
	case "busy", "notactive":
		return r, false, nil
	case "nohealthy":
		return r, false, ErrNoTarget
	case "lease":
		return r, false, errors.New("lease lost")
	case "same":
		return r, false, fmt.Errorf("%w: %s is already the active agent of pool %s", ErrBadTarget, r.target, p.k.Pool())
	case "notallowed":
		return r, false, fmt.Errorf("%w: %s is not an agent of pool %s (its agents: %s)", ErrBadTarget, r.target, p.k.Pool(), strings.Join(p.spec().Agents, ", "))
	case "unhealthy":
		return r, false, fmt.Errorf("%w: %s is not healthy (no heartbeat within its timeout)", ErrBadTarget, r.target)
	default:
		return r, false, fmt.Errorf("%w: %s (%s)", ErrBadTarget, r.target, r.status)
	}
}

func (c *Coordinator) step(p *poolCoord, name string) error {
	if c.hook != nil {
		if err := c.hook(p.k.Pool(), name); err != nil {
			return errCrash{err}
		}
	}
	return nil
}

// drive runs the switchover recorded in the control hash to completion:
// migrate batches, then drain batches, the last of which unlocks.
func (c *Coordinator) drive(ctx context.Context, p *poolCoord) error {
	for ctx.Err() == nil {
		v, err := c.o.Client.HMGet(ctx, p.k.Ctl(), "lock", "phase", "epoch", "from_stream", "target_stream").Result()
		if err != nil {
			return err
		}
		if asString(v[0]) != "1" {
			return nil
		}
		if !c.renew(ctx, p) {
			return nil
		}
		phase, epoch := asString(v[1]), asString(v[2])
		fromStream, toStream := asString(v[3]), asString(v[4])
		switch phase {
		case "migrate":
			if err := c.step(p, "migrate"); err != nil {
				return err
			}
			res, err := migrateScript.Run(ctx, c.o.Client,
				[]string{p.k.Ctl(), p.k.Lease(), fromStream, toStream},
				p.token, epoch, c.o.Batch).Slice()
			if err != nil {
				return err
			}
			if s := asString(res[0]); s == "lease" {
				return nil
			}
		case "drain":
			if err := c.step(p, "drain"); err != nil {
				return err
			}
			res, err := drainScript.Run(ctx, c.o.Client,
				[]string{p.k.Ctl(), p.k.Lease(), p.k.Buf(), toStream, p.k.Agents()},
				p.token, epoch, c.o.Batch).Slice()
			if err != nil {
				return err
			}
			switch asString(res[0]) {
			case "lease":
				return nil
			case "done":
				d := time.Duration(asInt(res[3])-asInt(res[2])) * time.Millisecond
				c.o.Metrics.observeSwitchover(p.k.Pool(), d.Seconds())
				p.log.Info("switchover done", "epoch", epoch, "duration", d)
				return nil
			}
		default:
			return fmt.Errorf("pool %s locked in unknown phase %q", p.k.Pool(), phase)
		}
	}
	return ctx.Err()
}

// SwitchoverResult describes a triggered switchover.
type SwitchoverResult struct {
	Pool  string `json:"pool"`
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch int64  `json:"epoch"`
	// NotActive is set when from was given and is not the active agent;
	// nothing was done.
	NotActive bool    `json:"not_active,omitempty"`
	Seconds   float64 `json:"duration_seconds"`
}

// Trigger starts a switchover of pool away from its active agent (only if
// that is from, when from is set), to target or to a healthy agent of the
// coordinator's choice, and waits until it completes. It needs no lease:
// the begin step is atomic, and the lease holder — this coordinator or
// another bridge's — drives the rest. A switchover already in progress is
// waited for instead.
func (c *Coordinator) Trigger(ctx context.Context, pool, from, target, reason string) (SwitchoverResult, error) {
	p := c.pool(pool)
	if p == nil {
		return SwitchoverResult{}, fmt.Errorf("%w %q", ErrUnknownPool, pool)
	}
	start := time.Now()
	r, _, err := c.begin(ctx, p, "", from, target, reason)
	if err != nil {
		return SwitchoverResult{Pool: pool}, err
	}
	out := SwitchoverResult{Pool: pool, From: r.from, To: r.target, Epoch: r.epoch}
	if r.status == "notactive" {
		out.NotActive = true
		return out, nil
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	for {
		v, err := c.o.Client.HMGet(ctx, p.k.Ctl(), "lock", "epoch", "agent").Result()
		if err == nil {
			e, _ := strconv.ParseInt(asString(v[1]), 10, 64)
			if asString(v[0]) != "1" && e >= r.epoch {
				out.Seconds = time.Since(start).Seconds()
				if e == r.epoch {
					out.To = asString(v[2])
				}
				return out, nil
			}
		}
		if !sleep(ctx, 10*time.Millisecond) {
			return out, fmt.Errorf("switchover of pool %s to %s still in progress: %w", pool, out.To, ctx.Err())
		}
	}
}

// Switchover implements runbooks.Switcher: switch pool away from
// fromAgent. A fromAgent that is no longer active is not an error.
func (c *Coordinator) Switchover(ctx context.Context, pool, fromAgent string) (string, error) {
	r, err := c.Trigger(ctx, pool, fromAgent, "", "runbook: switch away from "+fromAgent)
	if err != nil {
		return "", err
	}
	if r.NotActive {
		return fmt.Sprintf("agent %s is not the active agent of pool %s (active: %q); nothing to do", fromAgent, pool, r.From), nil
	}
	return fmt.Sprintf("pool %s switched from %s to %s (epoch %d) in %.3fs", pool, r.From, r.To, r.Epoch, r.Seconds), nil
}

// Status reads a configured pool's status.
func (c *Coordinator) Status(ctx context.Context, pool string) (Status, error) {
	p := c.pool(pool)
	if p == nil {
		return Status{}, fmt.Errorf("%w %q", ErrUnknownPool, pool)
	}
	return ReadStatus(ctx, c.o.Client, p.k)
}

// statusCollector reads each pool's state at scrape time.
type statusCollector struct{ c *Coordinator }

var (
	backlogDesc = prometheus.NewDesc("medic_dispatch_backlog",
		"Configs published and not yet acknowledged: in agent streams plus the buffer.", []string{"pool"}, nil)
	bufferDesc = prometheus.NewDesc("medic_dispatch_buffer",
		"Configs waiting in the pool's buffer stream (during a switchover or with no active agent).", []string{"pool"}, nil)
	epochDesc = prometheus.NewDesc("medic_dispatch_epoch",
		"The pool's current epoch; it grows by one per activation or switchover.", []string{"pool"}, nil)
	lockDesc = prometheus.NewDesc("medic_dispatch_locked",
		"1 while a switchover holds the pool's lock.", []string{"pool"}, nil)
	scrapeDesc = prometheus.NewDesc("medic_dispatch_status_scrape_success",
		"1 when the pool's status could be read from Redis.", []string{"pool"}, nil)
)

func (s *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogDesc
	ch <- bufferDesc
	ch <- epochDesc
	ch <- lockDesc
	ch <- scrapeDesc
}

func (s *statusCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range s.c.Pools() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := s.c.Status(ctx, name)
		cancel()
		if err != nil {
			ch <- prometheus.MustNewConstMetric(scrapeDesc, prometheus.GaugeValue, 0, name)
			continue
		}
		lock := 0.0
		if st.Lock {
			lock = 1
		}
		ch <- prometheus.MustNewConstMetric(scrapeDesc, prometheus.GaugeValue, 1, name)
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(st.Backlog+st.Buffer), name)
		ch <- prometheus.MustNewConstMetric(bufferDesc, prometheus.GaugeValue, float64(st.Buffer), name)
		ch <- prometheus.MustNewConstMetric(epochDesc, prometheus.GaugeValue, float64(st.Epoch), name)
		ch <- prometheus.MustNewConstMetric(lockDesc, prometheus.GaugeValue, lock, name)
	}
}
