// Package keys is the one map of every Redis key medic uses (the model is
// asynq's internal/base/base.go): its name, its hash tag, the package that
// owns it and what it holds. Every package builds its keys here and
// nowhere else, so a key's spelling is changed in one place, and
// docs/design.md §7 shows the same table (Table; a test keeps them equal).
//
// Keys one Lua script touches together share a hash tag (the part in
// braces), so that they live in one Redis Cluster slot and the script is
// atomic there too. Every function takes the prefix (--redis.prefix);
// Prefix turns "" into DefaultPrefix.
//
// The strings are a contract (docs/design.md §7): a key is renamed only
// with a migration and a line in the README's changelog. keys_test.go pins
// each one's rendering.
package keys

import (
	"strconv"
	"time"
)

// DefaultPrefix is the prefix of every key unless --redis.prefix says
// otherwise: the only definition of "medic:" in medic.
const DefaultPrefix = "medic:"

// Prefix is p, or DefaultPrefix when p is empty.
func Prefix(p string) string {
	if p == "" {
		return DefaultPrefix
	}
	return p
}

// Key is one row of the key map.
type Key struct {
	// Pattern is the key with the default prefix and its variable parts in
	// capitals: medic:{node:NAME}:jobs.
	Pattern string
	// Tag is the hash tag, "" when the key has none.
	Tag string
	// Type is the Redis type.
	Type string
	// Owner is the package that writes it.
	Owner string
	// Purpose says what it holds, in one line.
	Purpose string
}

// Table lists every key, in the order of docs/design.md §7.
var Table = []Key{
	{"medic:{node:NAME}:jobs", "{node:NAME}", "stream", "jobs", "the node's jobs (field job, JSON); consumer group medic"},
	{"medic:{node:NAME}:dedup:FP:STARTS_MS", "{node:NAME}", "string, TTL", "jobs", "one alert episode's state: q/r/d/c:RUNID, in the node's slot so dedup and enqueue are one script"},
	{"medic:{node:NAME}:expired", "{node:NAME}", "zset", "jobs", "the node's jobs reclaimed past their deadline and not yet recorded and escalated (score: lease until)"},
	{"medic:{node:NAME}:seen", "{node:NAME}", "string", "exporter", "the node's last snapshot time (Unix ms), read by the enqueue and reclaim scripts"},
	{"medic:{node:NAME}:scripts", "{node:NAME}", "hash", "exporter", "process groups of the node's running scripts, killed when their recorder is gone"},
	{"medic:{node:NAME}:incarnation", "{node:NAME}", "string", "runbooks", "the node process's current incarnation; a lease held by an older one is taken over"},
	{"medic:dedup:FP:STARTS_MS", "", "string, TTL", "bridge", "the episode of an alert no node could be found for"},
	{"medic:run:ID", "", "string, TTL", "jobs", "a run record (JSON)"},
	{"medic:runs", "", "zset", "jobs", "run ids by start time (ms)"},
	{"medic:lease:NODE:AGENT", "", "string, TTL", "runbooks", "one acting run per agent: RUN/INCARNATION of its holder, TTL 60 s renewed every 20 s"},
	{"medic:nodes", "", "set", "exporter", "every node that wrote a snapshot"},
	{"medic:node:NAME:state", "", "string, TTL", "exporter", "the node's last snapshot (exporter.NodeState, JSON), read by the bridge's fleet view"},
	{"medic:{auth}:session_epoch", "{auth}", "string", "bridge", "the status page's session epoch: every cookie carries its login's; signing out increments it, ending earlier sessions"},
	{"medic:{ctl}:pause", "{ctl}", "hash", "controls", "pauses: runbook (* for all) → pause (JSON: since, until, by, reason)"},
	{"medic:{ctl}:approvals", "{ctl}", "zset", "controls", "runs waiting for approval → deadline (Unix ms)"},
	{"medic:{ctl}:decision:ID", "{ctl}", "string, TTL", "controls", "an approval decision (JSON), kept 24 h"},
	{"medic:{ctl}:asked:ID", "{ctl}", "string, TTL", "controls", "the deadline of a run's first approval request (kept by a redelivered run), kept 24 h past it"},
	{"medic:{agent:NODE/AGENT}:budget", "{agent:NODE/AGENT}", "zset", "controls", "the agent's restarts (restart budget)"},
	{"medic:{agent:NODE/AGENT}:backoff", "{agent:NODE/AGENT}", "hash", "controls", "the agent's crash-loop backoff"},
	{"medic:{agent:NODE/AGENT}:circuit", "{agent:NODE/AGENT}", "zset", "controls", "the agent's runs counted by its circuit breaker"},
	{"medic:{rb:RUNBOOK}:conc:KEY", "{rb:RUNBOOK}", "zset", "controls", "concurrency slots: run id → slot lease expiry (renewed every TTL/3; a crashed node's slot frees after one TTL)"},
	{"medic:{rb:RUNBOOK}:queue:KEY", "{rb:RUNBOOK}", "zset", "controls", "runs waiting for a slot, in order"},
	{"medic:{rb:RUNBOOK}:qlease:KEY", "{rb:RUNBOOK}", "zset", "controls", "waiting runs' leases"},
	{"medic:{pool:NAME}:ctl", "{pool:NAME}", "hash", "queue", "agent, stream, status, host, lock, epoch, switchover phase and history"},
	{"medic:{pool:NAME}:in:AGENT", "{pool:NAME}", "stream", "queue", "an agent's configs; consumer group medic"},
	{"medic:{pool:NAME}:buf", "{pool:NAME}", "stream", "queue", "configs published while locked or with no active agent"},
	{"medic:{pool:NAME}:seq", "{pool:NAME}", "hash", "queue", "device → last seq assigned"},
	{"medic:{pool:NAME}:ack", "{pool:NAME}", "hash", "queue", "device → highest seq confirmed"},
	{"medic:{pool:NAME}:agents", "{pool:NAME}", "hash", "queue", "agent → last heartbeat, timeout, host (Redis server clock)"},
	{"medic:{pool:NAME}:coord", "{pool:NAME}", "string, TTL", "queue", "the pool's coordinator lease"},
	{"medic:{pool:NAME}:idem:KEY", "{pool:NAME}", "string, TTL", "queue", "a publish's idempotency record"},
	{"medic:{pool:NAME}:dev", "{pool:NAME}", "hash", "queue", "device → state of a device whose head config failed"},
	{"medic:{pool:NAME}:blocked", "{pool:NAME}", "zset", "queue", "blocked devices → since (ms)"},
	{"medic:{pool:NAME}:retrying", "{pool:NAME}", "zset", "queue", "retrying devices → since (ms)"},
	{"medic:{pool:NAME}:held", "{pool:NAME}", "hash", "queue", "device → the config a blocked device is held on"},
	{"medic:{pool:NAME}:dead", "{pool:NAME}", "stream", "queue", "dead letters: configs an operator skipped"},
	{"medic:{pool:NAME}:actions", "{pool:NAME}", "stream", "queue", "audit of operator actions on devices"},
}

// Hash tags.

func nodeTag(p, node string) string         { return p + "{node:" + node + "}:" }
func ctlTag(p string) string                { return p + "{ctl}:" }
func agentTag(p, node, agent string) string { return p + "{agent:" + node + "/" + agent + "}:" }
func runbookTag(p, runbook string) string   { return p + "{rb:" + runbook + "}:" }
func poolTag(p, pool string) string         { return p + "{pool:" + pool + "}:" }

// Episode is an alert episode's start as it appears in keys: Unix ms.
func Episode(startsAt time.Time) string { return strconv.FormatInt(startsAt.UnixMilli(), 10) }

// The job streams (owner: jobs).

// Jobs is a node's job stream.
func Jobs(p, node string) string { return nodeTag(p, node) + "jobs" }

// JobsPattern matches every node's job stream (SCAN MATCH); the node's name
// is what lies between NodeStreamPrefix(p) and JobsSuffix.
func JobsPattern(p string) string { return NodeStreamPrefix(p) + "*" + JobsSuffix }

// NodeStreamPrefix and JobsSuffix frame a node's name in Jobs.
func NodeStreamPrefix(p string) string { return p + "{node:" }

// JobsSuffix ends every job stream's name.
const JobsSuffix = "}:jobs"

// Dedup is the episode of an alert routed to node.
func Dedup(p, node, fingerprint string, startsAt time.Time) string {
	return nodeTag(p, node) + "dedup:" + fingerprint + ":" + Episode(startsAt)
}

// Outbox is a node's jobs reclaimed past their deadline.
func Outbox(p, node string) string { return nodeTag(p, node) + "expired" }

// Run is one run record.
func Run(p, id string) string { return p + "run:" + id }

// RunIndex is the run ids by start time.
func RunIndex(p string) string { return p + "runs" }

// Owner: bridge.

// DedupUnroutable is the episode of an alert no node could be found for.
func DedupUnroutable(p, fingerprint string, startsAt time.Time) string {
	return p + "dedup:" + fingerprint + ":" + Episode(startsAt)
}

// SessionEpoch is the status page's session epoch.
func SessionEpoch(p string) string { return p + "{auth}:session_epoch" }

// Owner: exporter (the node).

// Seen is a node's last snapshot time.
func Seen(p, node string) string { return nodeTag(p, node) + "seen" }

// Scripts is the process groups of a node's running scripts.
func Scripts(p, node string) string { return nodeTag(p, node) + "scripts" }

// Nodes is the set of every node that wrote a snapshot.
func Nodes(p string) string { return p + "nodes" }

// NodeState is a node's last snapshot.
func NodeState(p, node string) string { return p + "node:" + node + ":state" }

// Owner: runbooks (the engine's lease).

// Incarnation is a node process's current incarnation.
func Incarnation(p, node string) string { return nodeTag(p, node) + "incarnation" }

// LeaseName is an agent's lease without the prefix (the lease store adds
// it); Lease is the whole key.
func LeaseName(node, agent string) string { return "lease:" + node + ":" + agent }

// Lease is an agent's lease.
func Lease(p, node, agent string) string { return p + LeaseName(node, agent) }

// Owner: controls.

// Pause is the hash of pauses.
func Pause(p string) string { return ctlTag(p) + "pause" }

// Approvals is the runs waiting for approval.
func Approvals(p string) string { return ctlTag(p) + "approvals" }

// Decision is a run's approval decision.
func Decision(p, runID string) string { return ctlTag(p) + "decision:" + runID }

// Asked is the deadline of a run's first approval request.
func Asked(p, runID string) string { return ctlTag(p) + "asked:" + runID }

// Budget, Backoff and Circuit are an agent's restart budget, crash-loop
// backoff and circuit breaker.
func Budget(p, node, agent string) string  { return agentTag(p, node, agent) + "budget" }
func Backoff(p, node, agent string) string { return agentTag(p, node, agent) + "backoff" }
func Circuit(p, node, agent string) string { return agentTag(p, node, agent) + "circuit" }

// Conc, Queue and QLease are a runbook's concurrency slots, waiters and
// waiters' leases for one concurrency key.
func Conc(p, runbook, key string) string   { return runbookTag(p, runbook) + "conc:" + key }
func Queue(p, runbook, key string) string  { return runbookTag(p, runbook) + "queue:" + key }
func QLease(p, runbook, key string) string { return runbookTag(p, runbook) + "qlease:" + key }

// Owner: queue (one pool's keys; see queue.Keys for their contents).

func PoolCtl(p, pool string) string      { return poolTag(p, pool) + "ctl" }
func PoolInPrefix(p, pool string) string { return poolTag(p, pool) + "in:" }
func PoolIn(p, pool, agent string) string {
	return PoolInPrefix(p, pool) + agent
}
func PoolBuf(p, pool string) string       { return poolTag(p, pool) + "buf" }
func PoolSeq(p, pool string) string       { return poolTag(p, pool) + "seq" }
func PoolAck(p, pool string) string       { return poolTag(p, pool) + "ack" }
func PoolAgents(p, pool string) string    { return poolTag(p, pool) + "agents" }
func PoolCoord(p, pool string) string     { return poolTag(p, pool) + "coord" }
func PoolIdem(p, pool, key string) string { return poolTag(p, pool) + "idem:" + key }
func PoolDev(p, pool string) string       { return poolTag(p, pool) + "dev" }
func PoolBlocked(p, pool string) string   { return poolTag(p, pool) + "blocked" }
func PoolRetrying(p, pool string) string  { return poolTag(p, pool) + "retrying" }
func PoolHeld(p, pool string) string      { return poolTag(p, pool) + "held" }
func PoolDead(p, pool string) string      { return poolTag(p, pool) + "dead" }
func PoolActions(p, pool string) string   { return poolTag(p, pool) + "actions" }
