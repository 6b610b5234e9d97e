package jobs

import (
	"strconv"
	"time"
)

// DefaultPrefix is the key prefix of docs/design.md §7.
const DefaultPrefix = "medic:"

// Keys names every Redis key of the job streams, their episodes and the
// run records.
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
	Prefix string
}

// Root is the prefix in force: Prefix, or DefaultPrefix when unset.
func (k Keys) Root() string { return k.prefix() }

func (k Keys) prefix() string {
	if k.Prefix == "" {
		return DefaultPrefix
	}
	return k.Prefix
}

// nodeTag is the hash tag that keeps one node's keys in one slot.
func (k Keys) nodeTag(node string) string { return k.prefix() + "{node:" + node + "}:" }

// Jobs is a node's job stream.
func (k Keys) Jobs(node string) string { return k.nodeTag(node) + "jobs" }

// Seen is a node's last-seen time (Unix ms), written by the node with each
// state snapshot (exporter.SeenKey) and kept without a TTL, so that the
// bridge can tell a live node from an unknown or long-silent one at
// routing time, in the same script and slot as the job's enqueue.
func (k Keys) Seen(node string) string { return k.nodeTag(node) + "seen" }

// Dedup is the idempotency key of one alert episode routed to node.
func (k Keys) Dedup(node, fingerprint string, startsAt time.Time) string {
	return k.nodeTag(node) + "dedup:" + fingerprint + ":" + episode(startsAt)
}

// DedupUnroutable is the idempotency key of an episode no node could be
// found for.
func (k Keys) DedupUnroutable(fingerprint string, startsAt time.Time) string {
	return k.prefix() + "dedup:" + fingerprint + ":" + episode(startsAt)
}

// Run is where one run record is stored.
func (k Keys) Run(id string) string { return k.prefix() + "run:" + id }

// RunIndex is the sorted set (score: start time in ms) of run ids.
func (k Keys) RunIndex() string { return k.prefix() + "runs" }

// SessionEpoch is the integer every status-page session cookie carries
// from its login; signing out increments it, which ends every session
// signed in before (auth.go). Its own hash tag: it is read alone.
func (k Keys) SessionEpoch() string { return k.prefix() + "{auth}:session_epoch" }

func episode(startsAt time.Time) string { return strconv.FormatInt(startsAt.UnixMilli(), 10) }
