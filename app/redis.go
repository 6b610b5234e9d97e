package app

import (
	"context"
	"log/slog"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// startupPingTimeout bounds the one PING at start-up.
const startupPingTimeout = 2 * time.Second

// pingRedis PINGs Redis once at start-up and warns, naming the URL without
// its password, if it does not answer. The process still starts (its
// readiness says 503 until Redis answers), but the operator hears of the
// problem now rather than at the first webhook's 503.
func pingRedis(ctx context.Context, client redis.UniversalClient, rawURL string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, startupPingTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		log.Warn("Redis is unreachable at start-up; starting anyway, not ready until it answers", "redis_url", redactURL(rawURL), "err", err)
	}
}

// redactURL hides the password of a --redis.url.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
