package jobs

import (
	"time"

	"github.com/medicops/medic/internal/keys"
)

// Keys names the Redis keys of the job streams, their episodes and the run
// records under one prefix; the names themselves are in internal/keys, the
// one map of every key.
//
// The idempotency key of an alert episode is medic:dedup:FP:STARTS
// (docs/design.md §7) only for an alert no node could be found for. For a
// routable alert the key lives in the node's hash slot instead,
// medic:{node:NAME}:dedup:FP:STARTS, so that the dedup SET NX and the XADD
// onto medic:{node:NAME}:jobs are one atomic script on Redis Cluster too.
// Routing is a pure function of the alert and the config, so every bridge
// replica computes the same key for the same episode. Unroutable alerts,
// which have no node, use the plain name.
type Keys struct {
	// Prefix is --redis.prefix; "" means keys.DefaultPrefix.
	Prefix string
}

// Root is the prefix in force: Prefix, or keys.DefaultPrefix when unset.
func (k Keys) Root() string { return keys.Prefix(k.Prefix) }

// Jobs is a node's job stream.
func (k Keys) Jobs(node string) string { return keys.Jobs(k.Root(), node) }

// Seen is a node's last-seen time (Unix ms), written by the node with each
// state snapshot and kept without a TTL, so that the bridge can tell a
// live node from an unknown or long-silent one at routing time, in the
// same script and slot as the job's enqueue.
func (k Keys) Seen(node string) string { return keys.Seen(k.Root(), node) }

// Dedup is the idempotency key of one alert episode routed to node.
func (k Keys) Dedup(node, fingerprint string, startsAt time.Time) string {
	return keys.Dedup(k.Root(), node, fingerprint, startsAt)
}

// DedupUnroutable is the idempotency key of an episode no node could be
// found for.
func (k Keys) DedupUnroutable(fingerprint string, startsAt time.Time) string {
	return keys.DedupUnroutable(k.Root(), fingerprint, startsAt)
}

// Outbox is a node's jobs taken past their deadline and not yet recorded
// and escalated (a sorted set, score: lease until, Unix ms).
func (k Keys) Outbox(node string) string { return keys.Outbox(k.Root(), node) }

// Run is where one run record is stored.
func (k Keys) Run(id string) string { return keys.Run(k.Root(), id) }

// RunIndex is the sorted set (score: start time in ms) of run ids.
func (k Keys) RunIndex() string { return keys.RunIndex(k.Root()) }
