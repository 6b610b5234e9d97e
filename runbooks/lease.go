package runbooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/controls"
)

// MemoryLocker is a Locker for one process (`medic run`, tests): leases
// live in a map and are always released by the run that took them, so no
// TTL is needed.
type MemoryLocker struct {
	mu   sync.Mutex
	held map[string]bool
}

// NewMemoryLocker returns an empty in-process locker.
func NewMemoryLocker() *MemoryLocker { return &MemoryLocker{held: map[string]bool{}} }

var _ Locker = (*MemoryLocker)(nil)

// TryLock implements Locker.
func (m *MemoryLocker) TryLock(_ context.Context, key string, _ time.Duration) (func(), bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held[key] {
		return nil, false, nil
	}
	m.held[key] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.held, key)
			m.mu.Unlock()
		})
	}, true, nil
}

// The lease value is a random token; only its holder may renew or release
// it, so a run that outlived its TTL cannot release a successor's lease.
var (
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)
)

// RedisLocker is a Locker shared by every process that talks to one Redis:
// the key PREFIX+KEY (medic:lease:NODE:AGENT) is set with NX and a TTL and
// renewed every TTL/3 while the holder runs. A holder that dies loses the
// lease after at most one TTL.
type RedisLocker struct {
	client redis.UniversalClient
	prefix string
	log    *slog.Logger
}

var _ Locker = (*RedisLocker)(nil)

// NewRedisLocker returns a locker over client; prefix defaults to "medic:".
func NewRedisLocker(client redis.UniversalClient, prefix string) *RedisLocker {
	if prefix == "" {
		prefix = "medic:"
	}
	return &RedisLocker{client: client, prefix: prefix, log: slog.New(slog.DiscardHandler)}
}

// WithLogger makes the locker log lost leases to l.
func (l *RedisLocker) WithLogger(log *slog.Logger) *RedisLocker {
	l.log = log
	return l
}

// TryLock implements Locker.
func (l *RedisLocker) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	if ttl < 3*time.Millisecond {
		ttl = 3 * time.Millisecond
	}
	full := l.prefix + key
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	ok, err := l.client.SetNX(ctx, full, token, ttl).Result()
	if err != nil || !ok {
		return nil, false, err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go l.renew(full, token, ttl, stop, done)
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			<-done
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := releaseScript.Run(ctx, l.client, []string{full}, token).Err(); err != nil {
				l.log.Warn("lease release failed; it expires by itself", "key", full, "err", err)
			}
		})
	}
	return release, true, nil
}

func (l *RedisLocker) renew(key, token string, ttl time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	controls.KeepAlive(ttl, stop, done, func(ctx context.Context) (bool, error) {
		n, err := renewScript.Run(ctx, l.client, []string{key}, token, ttl.Milliseconds()).Int()
		return n != 0, err
	}, func(err error) {
		// Redis is unreachable for now; keep trying until the TTL decides.
		l.log.Warn("lease renewal failed", "key", key, "err", err)
	}, func() {
		l.log.Warn("lease lost: it expired or was taken over", "key", key)
	})
}
