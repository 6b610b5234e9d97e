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
