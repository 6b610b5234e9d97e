// Package controls owns the operator controls and shared limits that must
// hold across every bridge and node talking to one Redis: pauses, approvals
// of runs waiting in "approve" mode, the per-agent restart budget and circuit
// breaker, and the fleet-wide concurrency slots of a runbook.
//
// Every check-and-act is one Lua script, so two processes can never both
// take the last slot or both decide one approval. Keys that a script touches
// together share a hash tag, so the scripts run on Redis Cluster too. With
// the default prefix "medic:" (P below; the names are in internal/keys):
//
//	P{ctl}:pause                     hash: runbook ("*" = all) → Pause (JSON)
//	P{ctl}:approvals                 zset: run id → approval deadline (unix ms)
//	P{ctl}:decision:ID               string: Decision (JSON), kept DecisionTTL
//	P{ctl}:asked:ID                  string: approval deadline (unix ms) of the run's first request, kept past it by DecisionTTL
//	P{agent:NODE/AGENT}:budget       zset: restarts, score = when (unix ms)
//	P{agent:NODE/AGENT}:backoff      hash: streak, last (unix ms) of the crash loop
//	P{agent:NODE/AGENT}:circuit      zset: runs counted by the circuit, score = when
//	P{rb:RUNBOOK}:conc:KEY           zset: run id → slot lease expiry (unix ms)
//	P{rb:RUNBOOK}:queue:KEY          zset: waiting run id → when it queued (FIFO)
//	P{rb:RUNBOOK}:qlease:KEY         zset: waiting run id → waiter lease expiry
//
// Times are the callers' clocks (unix ms), not Redis' TIME, so that tests
// can drive them; nodes are expected to run NTP like any cluster. A slot or
// a place in the queue is a lease: its holder renews it, and a crashed
// holder's entry is dropped by the next script that looks once its lease
// expired. Nobody frees a slot by hand.
//
// The API the bridge uses (Pause, Resume, Pauses, Paused, Decide, Pending,
// ResetAgent) is a contract with bridge/ and internal/app: extend it, do not
// change those signatures without a note here.
package controls

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/keys"
)

// DecisionTTL is how long a decision is kept after it was made: long
// enough for the waiting run to read it, and to answer a second decision
// with ErrDecided rather than ErrNotPending.
const DecisionTTL = 24 * time.Hour

// Errors of Decide.
var (
	// ErrNotPending: no run waits for approval with that id (never did, or
	// its approval_ttl passed).
	ErrNotPending = errors.New("no run is waiting for approval with that id (or it expired)")
	// ErrDecided: the run was already approved or rejected; the first
	// decision stands.
	ErrDecided = errors.New("the run was already approved or rejected")
)

// Store is the shared control state in one Redis (standalone, Sentinel or
// Cluster). It is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	prefix string
}

// New returns a store over client; prefix defaults to "medic:".
func New(client redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = keys.DefaultPrefix
	}
	return &Store{client: client, prefix: prefix}
}

// Client is the Redis client the store uses.
func (s *Store) Client() redis.UniversalClient { return s.client }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// isNil reports a missing key/field answer.
func isNil(err error) bool { return errors.Is(err, redis.Nil) }
