package runbooks

import (
	"context"
	"sync"
	"time"

	"github.com/medicops/medic/controls"
)

// memCircuits is the circuit breaker of one process, used without
// Options.Controls (medic run) or while Redis is unreachable.
type memCircuits struct {
	mu   sync.Mutex
	runs map[string][]time.Time
}

func newMemCircuits() *memCircuits { return &memCircuits{runs: map[string][]time.Time{}} }

// count is controls.Store.Circuit in memory.
func (m *memCircuits) count(agent string, maxRuns int, window time.Duration, now time.Time, peek bool) (open bool, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keep []time.Time
	for _, t := range m.runs[agent] {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	if len(keep) >= maxRuns {
		m.runs[agent] = keep
		return true, keep[len(keep)-maxRuns].Add(window)
	}
	if peek {
		m.runs[agent] = keep
	} else {
		m.runs[agent] = append(keep, now)
	}
	return false, time.Time{}
}

// memSlots is the concurrency limit of one process.
type memSlots struct {
	mu      sync.Mutex
	held    map[string]int
	waiting map[string]int
	freed   chan struct{} // closed and replaced whenever a slot frees
}

func newMemSlots() *memSlots {
	return &memSlots{held: map[string]int{}, waiting: map[string]int{}, freed: make(chan struct{})}
}

// acquire is controls.Store.Acquire within the process: no lease is
// needed because the process that holds a slot is the one that frees it.
// Waiters are not strictly first come, first served.
func (m *memSlots) acquire(ctx context.Context, l controls.Limit) (release func(), waited time.Duration, err error) {
	k := l.Runbook + "\x00" + l.Key
	start := time.Now()
	timer := time.NewTimer(l.Wait)
	defer timer.Stop()
	queued := false
	defer func() {
		if queued {
			m.mu.Lock()
			m.waiting[k]--
			m.mu.Unlock()
		}
	}()
	for {
		m.mu.Lock()
		if m.held[k] < l.Max {
			m.held[k]++
			m.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					m.mu.Lock()
					m.held[k]--
					close(m.freed)
					m.freed = make(chan struct{})
					m.mu.Unlock()
				})
			}, time.Since(start), nil
		}
		if l.Wait <= 0 {
			m.mu.Unlock()
			return nil, 0, controls.ErrWaitTimeout
		}
		if !queued {
			if m.waiting[k] >= l.Queue {
				m.mu.Unlock()
				return nil, 0, controls.ErrQueueFull
			}
			m.waiting[k]++
			queued = true
		}
		freed := m.freed
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-timer.C:
			return nil, 0, controls.ErrWaitTimeout
		case <-freed:
		}
	}
}
