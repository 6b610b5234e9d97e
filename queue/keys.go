package queue

import (
	"fmt"
	"strings"

	"github.com/medicops/medic/internal/keys"
)

// Group is the consumer group every agent stream is read through; the
// consumer name is the agent ID.
const Group = "medic"

// Keys names one pool's Redis keys (spelt in internal/keys). All of them carry the hash tag
// {pool:NAME}, so they live in one Redis Cluster slot and every script may
// touch any of them, including an agent stream whose name it derives from
// the control hash.
type Keys struct {
	prefix string
	pool   string
}

// NewKeys returns the key names of pool under prefix ("" means
// keys.DefaultPrefix). It fails for names that would break the hash tag.
func NewKeys(prefix, pool string) (Keys, error) {
	prefix = keys.Prefix(prefix)
	if err := ValidPoolName(pool); err != nil {
		return Keys{}, err
	}
	return Keys{prefix: prefix, pool: pool}, nil
}

// ValidPoolName reports whether a pool name can be used in keys.
func ValidPoolName(pool string) error {
	if pool == "" {
		return fmt.Errorf("empty pool name")
	}
	if strings.ContainsAny(pool, "{}\x00 \t\r\n") {
		return fmt.Errorf("pool name %q: braces, spaces and control characters are not allowed", pool)
	}
	return nil
}

// validAgentID reports whether an agent ID can be used in keys and in the
// space-separated registry values.
func validAgentID(id string) error {
	if id == "" {
		return fmt.Errorf("empty agent ID")
	}
	if strings.ContainsAny(id, "{} \t\r\n\x00") {
		return fmt.Errorf("agent ID %q: braces, spaces and control characters are not allowed", id)
	}
	return nil
}

// Pool is the pool name.
func (k Keys) Pool() string { return k.pool }

// Ctl is the control hash: agent, stream, status, host, lock, epoch, phase,
// target, from, from_stream, started_ms, since_ms, reason, switchovers.
func (k Keys) Ctl() string { return keys.PoolCtl(k.prefix, k.pool) }

// In is the per-agent input stream.
func (k Keys) In(agent string) string { return keys.PoolIn(k.prefix, k.pool, agent) }

// InPrefix is In without the agent ID; scripts append the ID themselves.
func (k Keys) InPrefix() string { return keys.PoolInPrefix(k.prefix, k.pool) }

// Buf is the buffer stream producers write to while the pool is locked or
// has no active agent.
func (k Keys) Buf() string { return keys.PoolBuf(k.prefix, k.pool) }

// Seq is the hash device → last assigned sequence number.
func (k Keys) Seq() string { return keys.PoolSeq(k.prefix, k.pool) }

// Ack is the hash device → highest sequence number the device confirmed.
func (k Keys) Ack() string { return keys.PoolAck(k.prefix, k.pool) }

// Agents is the registry hash agent → "LAST_MS TIMEOUT_MS HOST", written by
// heartbeats with the Redis server's clock.
func (k Keys) Agents() string { return keys.PoolAgents(k.prefix, k.pool) }

// Lease is the coordinator lease (a token with a TTL).
func (k Keys) Lease() string { return keys.PoolCoord(k.prefix, k.pool) }

// Idem is a producer idempotency record ("ID SEQ" with a TTL).
func (k Keys) Idem(key string) string { return keys.PoolIdem(k.prefix, k.pool, key) }

// Dev is the hash device → JSON state of a device whose head config
// failed (state retrying or blocked, attempts, last answer, since); a
// device without an entry is ok.
func (k Keys) Dev() string { return keys.PoolDev(k.prefix, k.pool) }

// Blocked and Retrying index Dev by state: sorted sets device → since_ms,
// so the API lists them oldest first, page by page.
func (k Keys) Blocked() string  { return keys.PoolBlocked(k.prefix, k.pool) }
func (k Keys) Retrying() string { return keys.PoolRetrying(k.prefix, k.pool) }

// Dead is the pool's dead-letter stream: configs an operator skipped,
// with payload, seq, last answer, who and why.
func (k Keys) Dead() string { return keys.PoolDead(k.prefix, k.pool) }

// Actions is the audit stream of operator actions on devices (retry,
// skip): who, why, when; trimmed to about MaxActions entries.
func (k Keys) Actions() string { return keys.PoolActions(k.prefix, k.pool) }

// Held is the hash device → payload of the config a blocked device is
// held on, kept for its dead letter if an operator skips it.
func (k Keys) Held() string { return keys.PoolHeld(k.prefix, k.pool) }
