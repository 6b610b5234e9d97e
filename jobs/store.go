package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/runbooks"
)

// ErrNotFound is returned by RunStore.Get for an unknown or expired run.
var ErrNotFound = errors.New("run not found")

// Defaults of the run store.
const (
	DefaultRunRetention = 7 * 24 * time.Hour
	DefaultMaxRuns      = 10000
	DefaultListLimit    = 100
	MaxListLimit        = 1000
)

// StoreOptions tune a RunStore.
type StoreOptions struct {
	Keys Keys
	// Retention is how long a record is kept (its TTL); 0 means
	// DefaultRunRetention.
	Retention time.Duration
	// MaxRuns bounds the index; the oldest records beyond it are deleted.
	// 0 means DefaultMaxRuns.
	MaxRuns int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RunFilter selects runs in List. Empty fields match everything.
type RunFilter struct {
	Agent   string
	Node    string
	Runbook string
	Outcome string
	// Limit bounds the answer: 0 means DefaultListLimit, and it is capped
	// at MaxListLimit.
	Limit int
}

func (f RunFilter) match(r *runbooks.RunRecord) bool {
	return (f.Agent == "" || f.Agent == r.Agent) &&
		(f.Node == "" || f.Node == r.Node) &&
		(f.Runbook == "" || f.Runbook == r.Runbook) &&
		(f.Outcome == "" || f.Outcome == r.Outcome)
}

// RunStore keeps run records in Redis: each at medic:run:ID as JSON with a
// TTL (retention by age) and an index medic:runs, a sorted set by start
// time trimmed to MaxRuns (retention by count). Saving the same ID again
// replaces the record, which is how a run re-executed after a node crash
// keeps one record.
//
// The record and the index are in different hash slots, so they are
// written by separate commands, never one script; a reader that finds an
// index entry whose record is gone drops the entry.
type RunStore struct {
	c         redis.UniversalClient
	keys      Keys
	retention time.Duration
	maxRuns   int
	now       func() time.Time
}

// NewRunStore returns a store on c.
func NewRunStore(c redis.UniversalClient, o StoreOptions) *RunStore {
	s := &RunStore{c: c, keys: o.Keys, retention: o.Retention, maxRuns: o.MaxRuns, now: o.Now}
	if s.retention <= 0 {
		s.retention = DefaultRunRetention
	}
	if s.maxRuns <= 0 {
		s.maxRuns = DefaultMaxRuns
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Save stores rec under rec.ID, replacing any record with that ID.
func (s *RunStore) Save(ctx context.Context, rec *runbooks.RunRecord) error {
	if rec.ID == "" {
		return errors.New("save run: record has no id")
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("save run %s: %w", rec.ID, err)
	}
	at := rec.Started
	if at.IsZero() {
		at = rec.Finished
	}
	if at.IsZero() {
		at = s.now()
	}
	if err := s.c.Set(ctx, s.keys.Run(rec.ID), data, s.retention).Err(); err != nil {
		return fmt.Errorf("save run %s: %w", rec.ID, err)
	}
	idx := s.keys.RunIndex()
	// Index, age trim and count trim in one MULTI on the one index key, so
	// that concurrent saves never trim more than the excess.
	keep := int64(s.maxRuns)
	var excess *redis.StringSliceCmd
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, idx, redis.Z{Score: float64(at.UnixMilli()), Member: rec.ID})
		cutoff := s.now().Add(-s.retention).UnixMilli()
		p.ZRemRangeByScore(ctx, idx, "-inf", "("+strconv.FormatInt(cutoff, 10))
		excess = p.ZRange(ctx, idx, 0, -keep-1)
		p.ZRemRangeByRank(ctx, idx, 0, -keep-1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("index run %s: %w", rec.ID, err)
	}
	if old := excess.Val(); len(old) > 0 {
		// One DEL per key: the records are spread over hash slots.
		_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range old {
				p.Del(ctx, s.keys.Run(id))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("trim runs: %w", err)
		}
	}
	return nil
}

// Get returns the record with id, or ErrNotFound.
func (s *RunStore) Get(ctx context.Context, id string) (*runbooks.RunRecord, error) {
	data, err := s.c.Get(ctx, s.keys.Run(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	var rec runbooks.RunRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	return &rec, nil
}

// List returns the newest records that match f, newest first.
func (s *RunStore) List(ctx context.Context, f RunFilter) ([]*runbooks.RunRecord, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	page := int64(max(2*limit, 100))
	out := make([]*runbooks.RunRecord, 0, min(limit, 64))
	idx := s.keys.RunIndex()
	for start := int64(0); len(out) < limit && start < int64(s.maxRuns); start += page {
		ids, err := s.c.ZRevRange(ctx, idx, start, start+page-1).Result()
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		// GETs in a pipeline, not MGET: the records are in many slots.
		cmds := make([]*redis.StringCmd, len(ids))
		_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.Get(ctx, s.keys.Run(id))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		var gone []any
		for i, cmd := range cmds {
			data, err := cmd.Bytes()
			if errors.Is(err, redis.Nil) {
				gone = append(gone, ids[i])
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list runs: %w", err)
			}
			var rec runbooks.RunRecord
			if err := json.Unmarshal(data, &rec); err != nil {
				continue // not ours to fail the whole listing for
			}
			if f.match(&rec) && len(out) < limit {
				out = append(out, &rec)
			}
		}
		if len(gone) > 0 {
			s.c.ZRem(ctx, idx, gone...) // best effort: expired records
		}
		if int64(len(ids)) < page {
			break
		}
	}
	return out, nil
}
