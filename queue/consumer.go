package queue

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
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
