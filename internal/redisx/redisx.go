package redisx

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// New returns a UniversalClient for a URL. Its commands honour their
// context's deadline even inside socket I/O, so a hung Redis (accepts, never
// answers) cannot hold up shutdown or a lease renew past its deadline:
//
//	redis://[user:pass@]host:port[/db]           standalone
//	rediss://...                                 standalone over TLS
//	redis+cluster://host:port?addr=host2:port2   Redis Cluster (seed list)
//	redis+sentinel://host:port?master=NAME&addr=host2:port2  Sentinel
func New(rawURL string) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--redis.url %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("--redis.url %q: %w", rawURL, err)
		}
		o.ContextTimeoutEnabled = true
		return redis.NewClient(o), nil
	case "redis+cluster", "rediss+cluster":
		cu := *u
		cu.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
		o, err := redis.ParseClusterURL(cu.String())
		if err != nil {
			return nil, fmt.Errorf("--redis.url %q: %w", rawURL, err)
		}
		o.ContextTimeoutEnabled = true
		return redis.NewClusterClient(o), nil
	case "redis+sentinel":
		q := u.Query()
		master := q.Get("master")
		if master == "" {
			return nil, fmt.Errorf("--redis.url %q: sentinel URL needs ?master=NAME", rawURL)
		}
		addrs := append([]string{u.Host}, q["addr"]...)
		o := &redis.FailoverOptions{MasterName: master, SentinelAddrs: addrs, ContextTimeoutEnabled: true}
		if u.User != nil {
			o.Username = u.User.Username()
			o.Password, _ = u.User.Password()
		}
		return redis.NewFailoverClient(o), nil
	default:
		return nil, fmt.Errorf("--redis.url %q: unknown scheme %q (want redis, rediss, redis+cluster or redis+sentinel)", rawURL, u.Scheme)
	}
}

// Embedded starts an in-process, in-memory Redis-compatible store
// (miniredis). Its state is lost when the process exits. close stops it.
func Embedded() (client redis.UniversalClient, url string, close func(), err error) {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		return nil, "", nil, fmt.Errorf("start embedded store: %w", err)
	}
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	return c, "redis://" + m.Addr(), func() { c.Close(); m.Close() }, nil
}

// SetLogger sends go-redis's own log lines (dial failures, pool errors) to
// logger at debug. Without it they go to stderr unstructured, several a
// second while Redis is down, ignoring --log.level and --log.format. The
// go-redis logger is process-wide, so main calls this once.
func SetLogger(logger *slog.Logger) {
	redis.SetLogger(slogLogger{logger})
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	s.l.Log(ctx, slog.LevelDebug, msg, "component", "redis")
}
