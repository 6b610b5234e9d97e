package controls

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/keys"
)

// AllRunbooks is the hash field (and the medic_paused label value) of the
// global pause.
const AllRunbooks = "*"

// Pause stops new runs of one runbook, or of all of them, until Until or
// until resumed.
type Pause struct {
	Runbook string    `json:"runbook"` // "" = all runbooks
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until,omitzero"` // zero = until resumed
	By      string    `json:"by,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// Active reports whether the pause holds at now.
func (p Pause) Active(now time.Time) bool { return p.Until.IsZero() || now.Before(p.Until) }

func field(runbook string) string {
	if runbook == "" {
		return AllRunbooks
	}
	return runbook
}

// hdelIfSame drops an expired pause only if it is still the one read, so a
// pause set again meanwhile survives the cleanup.
var hdelIfSame = redis.NewScript(`
if redis.call("HGET", KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call("HDEL", KEYS[1], ARGV[1])
end
return 0`)

// Pause sets (or replaces) the pause of p.Runbook. Since defaults to now.
func (s *Store) Pause(ctx context.Context, p Pause) error {
	if p.Runbook == AllRunbooks {
		p.Runbook = ""
	}
	if p.Since.IsZero() {
		p.Since = time.Now()
	}
	if !p.Until.IsZero() && !p.Until.After(p.Since) {
		return fmt.Errorf("pause until %s is not after %s", p.Until.Format(time.RFC3339), p.Since.Format(time.RFC3339))
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.client.HSet(ctx, keys.Pause(s.prefix), field(p.Runbook), b).Err()
}

// Resume lifts the pause of runbook ("" lifts the global pause only, not
// the per-runbook ones). It reports whether there was one.
func (s *Store) Resume(ctx context.Context, runbook string) (bool, error) {
	n, err := s.client.HDel(ctx, keys.Pause(s.prefix), field(runbook)).Result()
	return n > 0, err
}

// Pauses lists the active pauses, the global one first, then by runbook.
// Expired ones are dropped from Redis on the way.
func (s *Store) Pauses(ctx context.Context, now time.Time) ([]Pause, error) {
	all, err := s.client.HGetAll(ctx, keys.Pause(s.prefix)).Result()
	if err != nil {
		return nil, err
	}
	out := []Pause{}
	for f, v := range all {
		p, ok := s.decodePause(ctx, f, v, now)
		if ok {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Runbook < out[j].Runbook })
	return out, nil
}

// Paused returns the pause that stops runbook now: the global one if set,
// else the runbook's own; nil if neither.
func (s *Store) Paused(ctx context.Context, runbook string, now time.Time) (*Pause, error) {
	fields := []string{AllRunbooks}
	if runbook != "" && runbook != AllRunbooks {
		fields = append(fields, runbook)
	}
	vals, err := s.client.HMGet(ctx, keys.Pause(s.prefix), fields...).Result()
	if err != nil {
		return nil, err
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		if p, ok := s.decodePause(ctx, fields[i], str, now); ok {
			return &p, nil
		}
	}
	return nil, nil
}

func (s *Store) decodePause(ctx context.Context, f, v string, now time.Time) (Pause, bool) {
	var p Pause
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		// Not ours to interpret; a pause nobody can read must not stop
		// remediation forever, nor be silently deleted.
		return Pause{}, false
	}
	if f == AllRunbooks {
		p.Runbook = ""
	} else {
		p.Runbook = f
	}
	if p.Active(now) {
		return p, true
	}
	// Best effort: an expired pause is ignored whether or not the delete
	// went through.
	_ = hdelIfSame.Run(ctx, s.client, []string{keys.Pause(s.prefix)}, f, v).Err()
	return Pause{}, false
}
