package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultIdempotencyTTL is how long a producer idempotency key remembers
// its first result.
const DefaultIdempotencyTTL = 24 * time.Hour

// MaxPayload bounds one config's payload (the API bounds the whole body the
// same way).
const MaxPayload = 1 << 20

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	Client redis.UniversalClient
	// Prefix of every key; "" means keys.DefaultPrefix.
	Prefix string
	// Agents lists, per pool, the agents allowed to become active when a
	// publish finds no active agent (the pool block's `agents`); a pool
	// missing here accepts any registered healthy agent.
	Agents map[string][]string
	// IdempotencyTTL defaults to DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration
	Metrics        *Metrics
}

// Publisher appends configs to pools. It is safe for concurrent use.
type Publisher struct {
	o PublisherOptions
}

// NewPublisher returns a Publisher.
func NewPublisher(o PublisherOptions) *Publisher {
	if o.IdempotencyTTL <= 0 {
		o.IdempotencyTTL = DefaultIdempotencyTTL
	}
	return &Publisher{o: o}
}

// Published is the result of a publish.
type Published struct {
	ID  string `json:"id"`
	Seq int64  `json:"seq"`
	// Duplicate is true when an idempotency key matched an earlier publish;
	// ID and Seq are that publish's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// ErrBadInput marks publish arguments that can never succeed.
var ErrBadInput = errors.New("bad input")

// Config is one item of PublishBatch.
type Config struct {
	Device         string
	Payload        []byte
	IdempotencyKey string
}

// Publish assigns the device's next sequence number (the first is 1) and
// appends the config to the pool's active agent's stream, or to the buffer
// while a switchover holds the lock or no agent is active. payload must be
// JSON. A non-empty idempotencyKey makes a retry return the first result
// instead of publishing twice.
func (p *Publisher) Publish(ctx context.Context, pool, device string, payload []byte, idempotencyKey string) (Published, error) {
	out, err := p.PublishBatch(ctx, pool, []Config{{device, payload, idempotencyKey}})
	if err != nil {
		return Published{}, err
	}
	return out[0], nil
}

func (p *Publisher) result(pool string, res []any) Published {
	out := Published{ID: asString(res[0]), Seq: asInt(res[1]), Duplicate: asInt(res[2]) == 1}
	if !out.Duplicate {
		p.o.Metrics.incPublished(pool)
	}
	return out
}

// PublishBatch publishes configs in order in one round trip: each
// publishBatch configs go in one script call (each config still assigned
// its seq exactly as Publish assigns it), the calls pipelined. On error a
// prefix of the batch may have been published: retry the whole batch with
// idempotency keys to publish each config exactly once.
func (p *Publisher) PublishBatch(ctx context.Context, pool string, configs []Config) ([]Published, error) {
	k, err := NewKeys(p.o.Prefix, pool)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	for _, c := range configs {
		if err := validConfig(c); err != nil {
			return nil, err
		}
	}
	// The keys and arguments every script call of the batch shares.
	fixedKeys := []string{k.Ctl(), k.Seq(), k.Buf(), k.Agents()}
	fixedArgs := []any{k.InPrefix(), p.o.IdempotencyTTL.Milliseconds(), strings.Join(p.o.Agents[k.Pool()], " ")}
	call := func(group []Config) ([]string, []any) {
		keys := slices.Clip(fixedKeys)
		args := append(make([]any, 0, len(fixedArgs)+3*len(group)), fixedArgs...)
		for _, c := range group {
			idem := 0
			if c.IdempotencyKey != "" {
				keys = append(keys, k.Idem(c.IdempotencyKey))
				idem = len(keys)
			}
			args = append(args, c.Device, c.Payload, idem)
		}
		return keys, args
	}
	var (
		cmds  []*redis.Cmd
		sizes []int
	)
	switch {
	case len(configs) == 0:
		return nil, nil
	case len(configs) <= publishBatch:
		// One script call: EVALSHA, and EVAL if Redis has lost its script
		// cache, which is safe since nothing ran.
		keys, args := call(configs)
		cmds = []*redis.Cmd{publishBatchScript.Run(ctx, p.o.Client, keys, args...)}
		sizes = []int{len(configs)}
	default:
		// Make sure the script is cached, so that a pipelined EVALSHA
		// fails with NOSCRIPT only after a server restart mid-batch (a
		// retry of some calls with EVAL could reorder them).
		if err := publishBatchScript.Load(ctx, p.o.Client).Err(); err != nil {
			return nil, fmt.Errorf("publish to pool %s: %w", pool, err)
		}
		pipe := p.o.Client.Pipeline()
		for start := 0; start < len(configs); start += publishBatch {
			group := configs[start:min(start+publishBatch, len(configs))]
			keys, args := call(group)
			cmds = append(cmds, publishBatchScript.EvalSha(ctx, pipe, keys, args...))
			sizes = append(sizes, len(group))
		}
		_, err = pipe.Exec(ctx)
	}
	out := make([]Published, 0, len(configs))
	for i, cmd := range cmds {
		res, cerr := cmd.Slice()
		if cerr == nil && len(res) != 3*sizes[i] {
			cerr = fmt.Errorf("publish script returned %d values for %d configs", len(res), sizes[i])
		}
		if cerr != nil {
			return out, fmt.Errorf("publish to pool %s: %w", pool, cerr)
		}
		for j := 0; j < len(res); j += 3 {
			out = append(out, p.result(pool, res[j:j+3]))
		}
	}
	if err != nil {
		return out, fmt.Errorf("publish to pool %s: %w", pool, err)
	}
	return out, nil
}

// publishBatch is how many configs one script call of PublishBatch
// publishes: large enough to amortise the call, small enough not to hold
// Redis for long (about a millisecond).
const publishBatch = 100

func validConfig(c Config) error {
	if c.Device == "" || strings.ContainsAny(c.Device, "\x00\r\n") || len(c.Device) > 256 {
		return fmt.Errorf("%w: device ID must be 1..256 bytes without control characters", ErrBadInput)
	}
	if len(c.Payload) > MaxPayload {
		return fmt.Errorf("%w: payload is %d bytes, limit %d", ErrBadInput, len(c.Payload), MaxPayload)
	}
	if !json.Valid(c.Payload) {
		return fmt.Errorf("%w: payload is not valid JSON", ErrBadInput)
	}
	if len(c.IdempotencyKey) > 256 {
		return fmt.Errorf("%w: idempotency key longer than 256 bytes", ErrBadInput)
	}
	return nil
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		var n int64
		fmt.Sscan(x, &n)
		return n
	default:
		return 0
	}
}
