package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ConsumerOptions configure a Consumer (one agent of one pool).
type ConsumerOptions struct {
	Client redis.UniversalClient
	// Prefix of every key; "" means keys.DefaultPrefix.
	Prefix string
	Pool   string
	Agent  string
	// Host is shown in the pool's status; default os.Hostname.
	Host string
	// DeviceURL returns the URL configs for a device are POSTed to (the
	// pool's device_url template).
	DeviceURL func(device string) (string, error)
	// HTTPClient defaults to a keep-alive client with RequestTimeout.
	HTTPClient     *http.Client
	RequestTimeout time.Duration // default 10s

	// HeartbeatInterval (default 500ms) and HeartbeatTimeout (default four
	// intervals): the coordinator treats the agent as gone once its last
	// heartbeat is older than the timeout.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration

	// Batch is the XREADGROUP COUNT (default 200); MaxBuffered bounds the
	// configs read but not yet done (default 20000).
	Batch       int
	MaxBuffered int
	// RetryMin and RetryMax bound the delivery retry backoff (default
	// 50ms..5s).
	RetryMin, RetryMax time.Duration
	// PollInterval is how often the agent re-reads the control hash while
	// off duty and while on duty (to notice it was replaced); default 100ms.
	PollInterval time.Duration
	// MaxAttempts is the pool's max_attempts: after that many answers of
	// a 4xx other than 408, 409, 425 and 429 to one config the device is
	// blocked until an operator retries or skips it; default 10.
	MaxAttempts int

	Logger  *slog.Logger
	Metrics *Metrics
}

// Consumer is the reference agent: it heartbeats into the pool registry
// and, while it is the pool's active agent (or switchover target), delivers
// the configs of its stream to the devices — one request in flight per
// device, devices in parallel, each device strictly in sequence order.
type Consumer struct {
	o ConsumerOptions
	k Keys

	// pusher delivers to plain-http devices when no HTTPClient was given.
	pusher *pusher

	// hooks are fault-injection points for this package's tests.
	hooks consumerHooks
}

type consumerHooks struct {
	beforePush   func(device string, seq int64)
	afterReply   func(device string, seq int64)
	afterAck     func(device string, seq int64)
	skipHB       func() bool // true: skip this heartbeat (a paused agent)
	noDeregister bool        // a "crashed" agent leaves its registration behind
}

// freshFor is how long a fence answer (a fence check, or the
// acknowledgement of a device's previous configs) may be relied on for the
// device's next pushes: no push goes out on an older one. The device's
// epoch check is what rejects a push that raced a switchover; this only
// saves round trips when configs of a device follow each other closely.
const freshFor = 5 * time.Millisecond

// NewConsumer validates the options and fills in defaults.
func NewConsumer(o ConsumerOptions) (*Consumer, error) {
	k, err := NewKeys(o.Prefix, o.Pool)
	if err != nil {
		return nil, err
	}
	if err := validAgentID(o.Agent); err != nil {
		return nil, err
	}
	if o.Client == nil || o.DeviceURL == nil {
		return nil, errors.New("consumer needs a Redis client and a DeviceURL function")
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	o.Host = strings.Map(func(r rune) rune {
		if r < ' ' {
			return -1
		}
		return r
	}, o.Host)
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	var p *pusher
	if o.HTTPClient == nil {
		p = newPusher(o.RequestTimeout)
		o.HTTPClient = &http.Client{
			Timeout: o.RequestTimeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        1024,
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     90 * time.Second,
			},
		}
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 500 * time.Millisecond
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 4 * o.HeartbeatInterval
	}
	if o.Batch <= 0 {
		o.Batch = 200
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 20000
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 50 * time.Millisecond
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = 5 * time.Second
		if o.RetryMax < o.RetryMin {
			o.RetryMax = o.RetryMin
		}
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("pool", o.Pool, "agent", o.Agent)
	o.Metrics.initPool(o.Pool)
	return &Consumer{o: o, k: k, pusher: p}, nil
}

// Run heartbeats and delivers until ctx ends. On return the agent has
// removed itself from the registry, so the coordinator switches the pool
// away at its next check; configs read but not delivered stay pending in the
// stream and move with it.
func (c *Consumer) Run(ctx context.Context) error {
	c.heartbeat(ctx)
	hbCtx, hbStop := context.WithCancel(context.Background())
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		c.heartbeatLoop(hbCtx, ctx)
	}()
	defer func() {
		c.o.HTTPClient.CloseIdleConnections()
		if c.pusher != nil {
			c.pusher.closeIdle()
		}
		hbStop()
		<-hbDone
		if !c.hooks.noDeregister {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := c.o.Client.HDel(dctx, c.k.Agents(), c.o.Agent).Err(); err != nil {
				c.o.Logger.Warn("deregister", "err", err)
			}
		}
	}()
	var lastErr string
	for ctx.Err() == nil {
		duty, epoch, _, err := c.duty(ctx)
		if err != nil {
			if ctx.Err() == nil && err.Error() != lastErr {
				c.o.Logger.Warn("read pool control", "err", err)
				lastErr = err.Error()
			}
			sleep(ctx, c.o.PollInterval)
			continue
		}
		lastErr = ""
		if !duty {
			sleep(ctx, c.o.PollInterval)
			continue
		}
		c.runEpoch(ctx, epoch)
	}
	return nil
}

func (c *Consumer) heartbeatLoop(ctx, runCtx context.Context) {
	t := time.NewTicker(c.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-runCtx.Done():
			return
		case <-t.C:
			c.heartbeat(ctx)
		}
	}
}

func (c *Consumer) heartbeat(ctx context.Context) {
	if c.hooks.skipHB != nil && c.hooks.skipHB() {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, c.o.HeartbeatInterval+time.Second)
	defer cancel()
	err := heartbeatScript.Run(hctx, c.o.Client, []string{c.k.Agents()},
		c.o.Agent, c.o.HeartbeatTimeout.Milliseconds(), c.o.Host).Err()
	if err != nil && ctx.Err() == nil {
		c.o.Logger.Debug("heartbeat", "err", err)
	}
}

// duty reads whether the agent is on duty, the current epoch, and the
// count of operator unblocks (retry, skip) of the pool's devices.
func (c *Consumer) duty(ctx context.Context) (bool, int64, string, error) {
	v, err := c.o.Client.HMGet(ctx, c.k.Ctl(), "epoch", "lock", "agent", "target", "unblocks").Result()
	if err != nil {
		return false, 0, "", err
	}
	epoch, _ := strconv.ParseInt(asString(v[0]), 10, 64)
	locked := asString(v[1]) == "1"
	onDuty := (!locked && asString(v[2]) == c.o.Agent) || (locked && asString(v[3]) == c.o.Agent)
	return onDuty, epoch, asString(v[4]), nil
}

// entry is one config read from the stream.
type entry struct {
	id      string
	device  string
	seq     int64
	payload []byte
}

func parseEntry(m redis.XMessage) (entry, error) {
	e := entry{id: m.ID, device: asString(m.Values["device"])}
	e.seq, _ = strconv.ParseInt(asString(m.Values["seq"]), 10, 64)
	e.payload = []byte(asString(m.Values["payload"]))
	if e.device == "" || e.seq <= 0 {
		return e, fmt.Errorf("malformed entry %s: %v", m.ID, m.Values)
	}
	return e, nil
}

// epochRun is the agent's work during one epoch on duty. When the epoch
// ends (the agent was replaced, or a new epoch made it active again) every
// in-memory config is dropped and the next epoch starts over from the
// stream's pending entries.
type epochRun struct {
	c      *Consumer
	epoch  int64
	ctx    context.Context
	cancel context.CancelFunc

	steps chan *stepReq

	mu       sync.Mutex
	queues   map[string]*deviceQueue
	queued   map[string]bool // entry IDs read and not yet done
	buffered int
	space    chan struct{}
	wg       sync.WaitGroup

	// blocked are the devices the agent does not push to (blocked in
	// Redis, read at the epoch's start and when a worker blocks one):
	// their entries stay pending in the stream, unread into memory, so a
	// blocked device holds neither memory nor the other devices. reconcile
	// asks the reader to drop the devices an operator unblocked and read
	// the pending entries again.
	blocked   map[string]bool
	reconcile atomic.Bool
}

type deviceQueue struct {
	entries []entry
	// last fence answer, reusable for freshFor when it says on duty
	checked   time.Time
	checkDuty bool
	// ack is the device's last confirmed seq: Redis's, advanced locally
	// by the device's own confirmations until they are acknowledged.
	ack     int64
	pending []done // reused by deliver
}

func (c *Consumer) runEpoch(ctx context.Context, epoch int64) {
	ectx, cancel := context.WithCancel(ctx)
	r := &epochRun{c: c, epoch: epoch, ctx: ectx, cancel: cancel,
		queues: map[string]*deviceQueue{}, queued: map[string]bool{}, space: make(chan struct{}, 1),
		steps: make(chan *stepReq, 256), blocked: map[string]bool{}}
	stepperDone := make(chan struct{})
	go func() {
		defer close(stepperDone)
		r.stepper()
	}()
	log := c.o.Logger.With("epoch", epoch)
	log.Info("on duty")
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		r.watch()
	}()
	err := r.loadBlocked()
	if err == nil {
		err = r.read()
	}
	cancel()
	r.wg.Wait()
	close(r.steps)
	<-stepperDone
	<-watchDone
	if ctx.Err() == nil {
		log.Info("off duty", "reason", err)
	}
}

// watch ends the epoch as soon as the control hash says so, so that a
// replaced agent stops even while it waits for input.
// It also notices operator unblocks (ctl's unblocks counter) and, while
// devices are blocked here, asks the reader to reconcile now and then in
// case an unblock raced the worker that blocked the device.
func (r *epochRun) watch() {
	t := time.NewTicker(r.c.o.PollInterval)
	defer t.Stop()
	var unblocks string
	first := true
	lastCheck := time.Now()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			duty, epoch, u, err := r.c.duty(r.ctx)
			if err != nil {
				continue
			}
			if !duty || epoch != r.epoch {
				r.cancel()
				return
			}
			if (!first && u != unblocks) || (time.Since(lastCheck) > reconcileEvery && r.anyBlocked()) {
				r.reconcile.Store(true)
				lastCheck = time.Now()
			}
			first, unblocks = false, u
		}
	}
}

// reconcileEvery is how often an agent with blocked devices checks them
// against Redis even without an unblock signal.
const reconcileEvery = 2 * time.Second

func (r *epochRun) anyBlocked() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.blocked) > 0
}

// loadBlocked reads the pool's blocked devices at the epoch's start.
func (r *epochRun) loadBlocked() error {
	for r.ctx.Err() == nil {
		devs, err := r.c.o.Client.ZRange(r.ctx, r.c.k.Blocked(), 0, -1).Result()
		if err == nil {
			r.mu.Lock()
			for _, d := range devs {
				r.blocked[d] = true
			}
			r.mu.Unlock()
			if len(devs) > 0 {
				r.c.o.Logger.Warn("blocked devices: not pushing to them until an operator retries or skips", "count", len(devs))
			}
			return nil
		}
		r.c.o.Logger.Warn("read blocked devices", "err", err)
		sleep(r.ctx, r.c.o.PollInterval)
	}
	return context.Cause(r.ctx)
}

// unblocked drops from r.blocked the devices Redis no longer has blocked
// and reports whether there were any: then the reader reads the pending
// entries again, from the start, so that those devices' configs are
// queued in order before any new one.
func (r *epochRun) unblocked() bool {
	r.mu.Lock()
	devs := make([]string, 0, len(r.blocked))
	for d := range r.blocked {
		devs = append(devs, d)
	}
	r.mu.Unlock()
	if len(devs) == 0 {
		return false
	}
	scores, err := r.c.o.Client.ZMScore(r.ctx, r.c.k.Blocked(), devs...).Result()
	if err != nil {
		r.reconcile.Store(true) // try again
		return false
	}
	n := 0
	r.mu.Lock()
	for i, d := range devs {
		if scores[i] == 0 { // not a member (a since_ms is never 0)
			delete(r.blocked, d)
			n++
			r.c.o.Logger.Info("device unblocked: delivering again", "device", d, "epoch", r.epoch)
		}
	}
	r.mu.Unlock()
	return n > 0
}

// read feeds the device queues: the agent's own pending entries first
// (delivered to it before but never acknowledged), then new ones.
func (r *epochRun) read() error {
	c := r.c
	stream := c.k.In(c.o.Agent)
	if err := r.ensureGroup(stream); err != nil {
		return err
	}
	lastID := "0"
	var lastErr string
	for r.ctx.Err() == nil {
		if !r.waitSpace() {
			break
		}
		if r.reconcile.Swap(false) && r.unblocked() {
			lastID = "0"
		}
		args := &redis.XReadGroupArgs{
			Group: Group, Consumer: c.o.Agent, Streams: []string{stream, lastID},
			Count: int64(c.o.Batch), Block: -1,
		}
		if lastID == ">" {
			args.Block = 500 * time.Millisecond
		}
		res, err := c.o.Client.XReadGroup(r.ctx, args).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil && strings.HasPrefix(err.Error(), "NOGROUP"):
			if err := r.ensureGroup(stream); err != nil {
				return err
			}
			lastID = "0"
			continue
		case err != nil:
			if r.ctx.Err() != nil {
				return context.Cause(r.ctx)
			}
			if err.Error() != lastErr {
				c.o.Logger.Warn("read stream", "err", err)
				lastErr = err.Error()
			}
			// The server may have delivered entries whose reply was lost
			// (a dropped connection, a restart): they are in this
			// consumer's pending list now, so read that again; entries
			// already queued here are skipped by ID.
			lastID = "0"
			sleep(r.ctx, c.o.PollInterval)
			continue
		}
		lastErr = ""
		var msgs []redis.XMessage
		if len(res) > 0 {
			msgs = res[0].Messages
		}
		if lastID != ">" {
			if len(msgs) == 0 {
				lastID = ">"
				continue
			}
			lastID = msgs[len(msgs)-1].ID
		}
		for _, m := range msgs {
			if m.Values == nil {
				// A pending entry deleted after delivery (moved away by a
				// switchover): nothing to do here.
				c.o.Client.XAck(r.ctx, stream, Group, m.ID)
				continue
			}
			e, err := parseEntry(m)
			if err != nil {
				c.o.Logger.Error("dropping malformed entry", "err", err)
				c.o.Client.XAck(r.ctx, stream, Group, m.ID)
				c.o.Client.XDel(r.ctx, stream, m.ID)
				continue
			}
			r.add(e)
		}
	}
	return context.Cause(r.ctx)
}

func (r *epochRun) ensureGroup(stream string) error {
	for r.ctx.Err() == nil {
		err := r.c.o.Client.XGroupCreateMkStream(r.ctx, stream, Group, "0").Err()
		if err == nil || strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return nil
		}
		r.c.o.Logger.Warn("create consumer group", "err", err)
		sleep(r.ctx, r.c.o.PollInterval)
	}
	return r.ctx.Err()
}

func (r *epochRun) waitSpace() bool {
	for {
		r.mu.Lock()
		ok := r.buffered < r.c.o.MaxBuffered
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-r.ctx.Done():
			return false
		case <-r.space:
		case <-time.After(r.c.o.PollInterval):
			// Keep the consumer visibly alive to the coordinator's idle
			// check: re-reading the first pending entry changes nothing.
			r.c.o.Client.XReadGroup(r.ctx, &redis.XReadGroupArgs{
				Group: Group, Consumer: r.c.o.Agent, Block: -1, Count: 1,
				Streams: []string{r.c.k.In(r.c.o.Agent), "0"},
			})
		}
	}
}

func (r *epochRun) add(e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queued[e.id] || r.blocked[e.device] {
		return
	}
	r.queued[e.id] = true
	q := r.queues[e.device]
	start := q == nil
	if start {
		q = &deviceQueue{}
		r.queues[e.device] = q
	}
	q.entries = append(q.entries, e)
	r.buffered++
	if start {
		r.wg.Add(1)
		go r.work(e.device, q)
	}
}

// work delivers one device's configs in order, one request in flight: it
// takes the configs queued so far (up to maxWindow) and delivers them as
// one window.
func (r *epochRun) work(device string, q *deviceQueue) {
	defer r.wg.Done()
	var window []entry
	for {
		r.mu.Lock()
		if len(q.entries) == 0 || r.ctx.Err() != nil {
			r.buffered -= len(q.entries)
			delete(r.queues, device)
			r.mu.Unlock()
			return
		}
		n := min(len(q.entries), maxWindow)
		window = append(window[:0], q.entries[:n]...)
		clear(q.entries[:n])
		q.entries = q.entries[n:]
		if len(q.entries) == 0 {
			q.entries = nil // let the backing array go
		}
		r.mu.Unlock()

		blocked := r.deliver(q, window)

		r.mu.Lock()
		r.buffered -= len(window)
		for _, e := range window {
			delete(r.queued, e.id)
		}
		if blocked {
			// Drop the device's configs from memory; they stay pending
			// in the stream and are read again once it is unblocked.
			r.blocked[device] = true
			r.buffered -= len(q.entries)
			for _, e := range q.entries {
				delete(r.queued, e.id)
			}
			q.entries = nil
			delete(r.queues, device)
		}
		r.mu.Unlock()
		select {
		case r.space <- struct{}{}:
		default:
		}
		if blocked {
			return
		}
	}
}

// maxWindow bounds the configs of one device pushed between two
// acknowledgements (and so how many a successor re-pushes, as replays, when
// an agent dies before recording them).
const maxWindow = 64

// done is a config the device confirmed (pushed) or that an earlier push
// already delivered; it still has to be acknowledged in Redis.
type done struct {
	e      entry
	pushed bool
}

// deliver pushes a window of one device's configs, in order, each until the
// device confirms it or the epoch ends. Every push goes out on a fence
// answer (on duty in this epoch, and where the device is) younger than
// freshFor; the acknowledgement of the pushes so far is that answer, so in
// steady state a device costs one Redis round trip per window, not per
// config. It reports whether the device got blocked (max_attempts
// permanent rejections of its head config).
func (r *epochRun) deliver(q *deviceQueue, window []entry) (blocked bool) {
	c := r.c
	var e entry
	// Built on first use: the happy path logs nothing and allocates no logger.
	var logger *slog.Logger
	log := func() *slog.Logger {
		if logger == nil {
			logger = c.o.Logger.With("device", e.device, "seq", e.seq, "epoch", r.epoch)
		}
		return logger
	}
	backoff := c.o.RetryMin
	wait := func() bool {
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, c.o.RetryMax)
		return sleep(r.ctx, d)
	}
	// What the device confirmed and Redis has not heard yet: pending, and
	// sent (one acknowledgement in flight, answered on inflight). The
	// acknowledgement goes out halfway through the fence's freshness, so
	// its answer — the next fence — usually arrives before the pushes need
	// it.
	pending := q.pending[:0]
	var sent []done
	var inflight chan stepRes
	settle := func(block bool) {
		if inflight == nil {
			return
		}
		var res stepRes
		if block {
			res = <-inflight // the stepper answers every request it took
		} else {
			select {
			case res = <-inflight:
			default:
				return
			}
		}
		inflight = nil
		if res.err != nil {
			r.ackAll(q, sent) // retries until Redis answers
		} else {
			r.acked(q, sent, res)
		}
		clear(sent)
		sent = sent[:0]
	}
	send := func() {
		if inflight != nil || len(pending) == 0 {
			return
		}
		if inflight = r.stepAsync(ackItems(pending)); inflight == nil {
			r.ackAll(q, pending) // the epoch ended: one synchronous try
			clear(pending)
			pending = pending[:0]
			return
		}
		sent, pending = pending, sent[:0]
	}
	// flush acknowledges everything the device confirmed so far; its
	// answer is also the next fence.
	flush := func() {
		settle(true)
		send()
		settle(true)
	}
	defer func() {
		flush()
		q.pending = pending
	}()
	gapSeen := false
	for i := 0; i < len(window) && r.ctx.Err() == nil; {
		if e.id != window[i].id {
			e, logger = window[i], nil
		}
		settle(false)
		// Fence: am I still on duty in my epoch, and where is the device?
		if q.checked.IsZero() || time.Since(q.checked) > freshFor || !q.checkDuty {
			if inflight != nil || len(pending) > 0 {
				flush()
				continue
			}
			duty, ack, _, err := r.step(r.ctx, e.device, 0, "")
			if err != nil {
				if r.ctx.Err() == nil {
					log().Warn("fence check", "err", err)
				}
				wait()
				continue
			}
			q.checked, q.checkDuty, q.ack = time.Now(), duty, ack
		}
		if !q.checkDuty {
			r.cancel()
			return false
		}
		switch {
		case e.seq <= q.ack:
			// Delivered before (by this agent before a crash, or by the
			// agent before a switchover): done, acknowledge only.
			pending = append(pending, done{e: e})
			i++
			continue
		case e.seq > q.ack+1:
			if !gapSeen {
				gapSeen = true
				c.o.Metrics.incGap(c.o.Pool)
				log().Error("sequence gap: holding device", "ack", q.ack)
			}
			flush()
			wait()
			q.checked = time.Time{} // read where the device is again
			continue
		}
		if gapSeen {
			log().Info("sequence gap closed", "ack", q.ack)
			gapSeen = false
		}
		if time.Since(q.checked) > freshFor/2 {
			send()
		}
		if h := c.hooks.beforePush; h != nil {
			h(e.device, e.seq)
		}
		code, err := c.push(r.ctx, e, r.epoch)
		if err != nil || code < 200 || code > 299 {
			if r.ctx.Err() != nil {
				return false
			}
			c.o.Metrics.incFailure(c.o.Pool)
			// Redis's ack must be e.seq-1 for the failure to count.
			flush()
			state, attempts := r.recordFailure(e, code, err)
			if state == StateBlocked {
				log().Error("device blocked: it rejected its next config; not pushing to it until an operator retries or skips it",
					"status", code, "attempts", attempts, "max_attempts", c.o.MaxAttempts)
				return true
			}
			log().Warn("delivery failed, retrying", "status", code, "err", err, "attempts", attempts)
			wait()
			q.checked = time.Time{}
			continue
		}
		if h := c.hooks.afterReply; h != nil {
			h(e.device, e.seq)
		}
		// The device holds e.seq now; Redis hears it with the next
		// acknowledgement.
		q.ack = e.seq
		pending = append(pending, done{e: e, pushed: true})
		i++
	}
	return false
}

// recordFailure records a failed push of a device's head config in the
// pool's device state and returns the device's state (retrying or
// blocked; "" when Redis could not be told, so the agent keeps retrying)
// and the config's failed attempts so far.
func (r *epochRun) recordFailure(e entry, code int, perr error) (string, int64) {
	c := r.c
	msg := ""
	if perr != nil {
		msg = perr.Error()
	} else {
		msg = fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	}
	permanent := 0
	if perr == nil && Permanent(code) {
		permanent = 1
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	res, err := failScript.Run(ctx, c.o.Client,
		[]string{c.k.Ctl(), c.k.Ack(), c.k.Dev(), c.k.Retrying(), c.k.Blocked(), c.k.Held()},
		c.o.Agent, r.epoch, e.device, e.seq, code, msg, permanent, c.o.MaxAttempts, e.payload).Slice()
	if err != nil || len(res) != 2 {
		if r.ctx.Err() == nil {
			c.o.Logger.Warn("record delivery failure", "device", e.device, "seq", e.seq, "err", err)
		}
		return "", 0
	}
	return asString(res[0]), asInt(res[1])
}

// ackAll records confirmed (or earlier confirmed) configs of one device, in
// order: ack advances and the entries leave the stream, in one script call
// that also re-checks the fence for the device's next push. It retries
// until Redis answers or the agent stops; a config the device confirmed is
// worth recording even if the epoch ended meanwhile.
func (r *epochRun) ackAll(q *deviceQueue, ds []done) {
	c := r.c
	backoff := c.o.RetryMin
	parent := context.WithoutCancel(r.ctx)
	items := ackItems(ds)
	for {
		actx, cancel := context.WithTimeout(parent, 5*time.Second)
		res, err := r.stepItems(actx, items)
		cancel()
		if err == nil {
			r.acked(q, ds, res)
			return
		}
		c.o.Logger.Warn("acknowledge", "device", ds[0].e.device, "seq", ds[0].e.seq, "epoch", r.epoch, "err", err)
		if r.ctx.Err() != nil {
			// The epoch or the agent ended: whoever is on duty next
			// finds the device's state and acknowledges it then.
			return
		}
		sleep(r.ctx, backoff)
		backoff = min(2*backoff, c.o.RetryMax)
	}
}

func ackItems(ds []done) []stepItem {
	items := make([]stepItem, len(ds))
	for i, d := range ds {
		items[i] = stepItem{device: d.e.device, seq: d.e.seq, id: d.e.id}
	}
	return items
}

// acked takes Redis's answer to an acknowledgement: the fence, and where
// the device is. The device's own confirmations may be ahead of it by the
// pushes made while the answer was on its way.
func (r *epochRun) acked(q *deviceQueue, ds []done, res stepRes) {
	c := r.c
	if res.at.After(q.checked) {
		q.checked, q.checkDuty = res.at, res.duty
	}
	all := true
	for i, d := range ds {
		if !res.acked[i] {
			all = false
			c.o.Logger.Error("device confirmed a config past its ack; leaving it pending",
				"device", d.e.device, "seq", d.e.seq, "epoch", r.epoch, "ack", res.acks[i])
			continue
		}
		if d.pushed {
			c.o.Metrics.incDelivered(c.o.Pool)
		}
		if h := c.hooks.afterAck; h != nil {
			h(d.e.device, d.e.seq)
		}
	}
	if last := res.acks[len(ds)-1]; all {
		q.ack = max(q.ack, last)
	} else {
		q.ack = last
		q.checked = time.Time{} // read where the device is again
	}
	if !res.duty {
		q.checkDuty = false
		r.cancel()
	}
}

// stepItem is one fence check (seq 0) or acknowledgement.
type stepItem struct {
	device string
	seq    int64
	id     string
}

// stepReq is a device worker's items for the stepper, kept together and in
// order in one script call.
type stepReq struct {
	items []stepItem
	res   chan stepRes
}

type stepRes struct {
	duty  bool
	acks  []int64
	acked []bool
	at    time.Time // when the answer arrived
	err   error
}

// stepper runs the device workers' fence checks and acknowledgements,
// several per script call: while one call is in flight the next requests
// queue up and go together (group commit), which keeps Redis round trips
// well below one per config when many devices are busy.
func (r *epochRun) stepper() {
	const maxItems = 1024
	c := r.c
	keys := []string{c.k.Ctl(), c.k.Ack(), c.k.In(c.o.Agent), c.k.Dev(), c.k.Retrying(), c.k.Blocked()}
	var batch []*stepReq
	var args []any
	for req := range r.steps {
		batch = append(batch[:0], req)
		n := len(req.items)
	more:
		for n < maxItems {
			select {
			case q, ok := <-r.steps:
				if !ok {
					break more
				}
				batch = append(batch, q)
				n += len(q.items)
			default:
				break more
			}
		}
		args = append(args[:0], c.o.Agent, r.epoch)
		for _, q := range batch {
			for _, it := range q.items {
				args = append(args, it.device, it.seq, it.id)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := stepScript.Run(ctx, c.o.Client, keys, args...).Slice()
		cancel()
		answered := time.Now()
		if err == nil && len(res) != 1+2*n {
			err = fmt.Errorf("step script returned %d values for %d items", len(res), n)
		}
		at := 1
		for _, q := range batch {
			if err != nil {
				q.res <- stepRes{err: err}
				continue
			}
			out := stepRes{duty: asInt(res[0]) == 1, acks: make([]int64, len(q.items)), acked: make([]bool, len(q.items)), at: answered}
			for i := range q.items {
				out.acks[i], out.acked[i] = asInt(res[at]), asInt(res[at+1]) == 1
				at += 2
			}
			q.res <- out
		}
		clear(batch)
	}
}

// stepAsync hands items to the stepper and returns where the answer will
// be, or nil when the epoch ended first.
func (r *epochRun) stepAsync(items []stepItem) chan stepRes {
	q := &stepReq{items: items, res: make(chan stepRes, 1)}
	select {
	case r.steps <- q:
		return q.res
	case <-r.ctx.Done():
		return nil
	}
}

func (r *epochRun) stepItems(ctx context.Context, items []stepItem) (stepRes, error) {
	q := &stepReq{items: items, res: make(chan stepRes, 1)}
	select {
	case r.steps <- q:
	case <-ctx.Done():
		return stepRes{}, ctx.Err()
	}
	select {
	case res := <-q.res:
		return res, res.err
	case <-ctx.Done():
		return stepRes{}, ctx.Err()
	}
}

func (r *epochRun) step(ctx context.Context, device string, seq int64, id string) (duty bool, ack int64, acked bool, err error) {
	res, err := r.stepItems(ctx, []stepItem{{device: device, seq: seq, id: id}})
	if err != nil {
		return false, 0, false, err
	}
	return res.duty, res.acks[0], res.acked[0], nil
}

// push POSTs one config. The headers let the device drop replays
// (Idempotency-Key) and reject a replaced agent (X-Medic-Epoch).
func (c *Consumer) push(ctx context.Context, e entry, epoch int64) (int, error) {
	url, err := c.o.DeviceURL(e.device)
	if err != nil {
		return 0, fmt.Errorf("device URL: %w", err)
	}
	seq := strconv.FormatInt(e.seq, 10)
	hdr := []pushHeader{
		{"Content-Type", "application/json"},
		{"Idempotency-Key", e.device + ":" + seq},
		{"X-Medic-Seq", seq},
		{"X-Medic-Epoch", strconv.FormatInt(epoch, 10)},
		{"X-Medic-Agent", c.o.Agent},
		{"X-Medic-Pool", c.o.Pool},
	}
	if c.pusher != nil {
		t, err := c.pusher.target(url)
		if err != nil {
			return 0, err
		}
		if t.direct {
			return c.pusher.do(ctx, t, e.payload, hdr)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(e.payload))
	if err != nil {
		return 0, err
	}
	for _, h := range hdr {
		req.Header.Set(h.name, h.value)
	}
	resp, err := c.o.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
