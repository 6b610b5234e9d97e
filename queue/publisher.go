package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// Prefix of every key; "" means DefaultPrefix.
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

// Publish assigns the device's next sequence number (the first is 1) and
// appends the config to the pool's active agent's stream, or to the buffer
// while a switchover holds the lock or no agent is active. payload must be
// JSON. A non-empty idempotencyKey makes a retry return the first result
// instead of publishing twice.
func (p *Publisher) Publish(ctx context.Context, pool, device string, payload []byte, idempotencyKey string) (Published, error) {
	k, err := NewKeys(p.o.Prefix, pool)
	if err != nil {
		return Published{}, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if device == "" || strings.ContainsAny(device, "\x00\r\n") || len(device) > 256 {
		return Published{}, fmt.Errorf("%w: device ID must be 1..256 bytes without control characters", ErrBadInput)
	}
	if len(payload) > MaxPayload {
		return Published{}, fmt.Errorf("%w: payload is %d bytes, limit %d", ErrBadInput, len(payload), MaxPayload)
	}
	if !json.Valid(payload) {
		return Published{}, fmt.Errorf("%w: payload is not valid JSON", ErrBadInput)
	}
	if len(idempotencyKey) > 256 {
		return Published{}, fmt.Errorf("%w: idempotency key longer than 256 bytes", ErrBadInput)
	}
	keys := []string{k.Ctl(), k.Seq(), k.Buf(), k.Agents()}
	if idempotencyKey != "" {
		keys = append(keys, k.Idem(idempotencyKey))
	}
	res, err := publishScript.Run(ctx, p.o.Client, keys,
		device, payload, k.InPrefix(), p.o.IdempotencyTTL.Milliseconds(),
		strings.Join(p.o.Agents[pool], " ")).Slice()
	if err != nil {
		return Published{}, fmt.Errorf("publish to pool %s: %w", pool, err)
	}
	out := Published{ID: asString(res[0]), Seq: asInt(res[1]), Duplicate: asInt(res[2]) == 1}
	if !out.Duplicate {
		p.o.Metrics.incPublished(pool)
	}
	return out, nil
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
