package queue

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// deviceCollector reads each pool's device states and its oldest pending
// config at scrape time.
type deviceCollector struct{ c *Coordinator }

var (
	devicesDesc = prometheus.NewDesc("medic_dispatch_devices",
		"Devices of the pool by state: ok, retrying (its next config failed and is retried with backoff), blocked (rejected max_attempts times; needs an operator's retry or skip).",
		[]string{"pool", "state"}, nil)
	oldestDesc = prometheus.NewDesc("medic_dispatch_oldest_pending_seconds",
		"Age of the pool's oldest config not yet acknowledged (agent streams and buffer); 0 when none. A switchover's migration restamps the configs it moves.",
		[]string{"pool"}, nil)
	devicesScrapeDesc = prometheus.NewDesc("medic_dispatch_devices_scrape_success",
		"1 when the pool's device states could be read from Redis.", []string{"pool"}, nil)
	devicesDurationDesc = prometheus.NewDesc("medic_dispatch_devices_scrape_duration_seconds",
		"Time reading the pool's device states took.", []string{"pool"}, nil)
)

func (d *deviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- devicesDesc
	ch <- oldestDesc
	ch <- devicesScrapeDesc
	ch <- devicesDurationDesc
}

func (d *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range d.c.Pools() {
		k, ok := d.c.Keys(name)
		if !ok {
			continue
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := d.update(ctx, k, ch)
		cancel()
		ok1 := 1.0
		if err != nil {
			ok1 = 0
			d.c.o.Logger.Warn("read device states for metrics", "pool", name, "err", err)
		}
		ch <- prometheus.MustNewConstMetric(devicesScrapeDesc, prometheus.GaugeValue, ok1, name)
		ch <- prometheus.MustNewConstMetric(devicesDurationDesc, prometheus.GaugeValue, time.Since(start).Seconds(), name)
	}
}

// DeviceCounts counts a pool's devices by state.
func DeviceCounts(ctx context.Context, c redis.UniversalClient, k Keys) (map[string]int64, error) {
	pipe := c.Pipeline()
	all := pipe.HLen(ctx, k.Seq())
	blocked := pipe.ZCard(ctx, k.Blocked())
	retrying := pipe.ZCard(ctx, k.Retrying())
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	return map[string]int64{
		StateOK:       max(all.Val()-blocked.Val()-retrying.Val(), 0),
		StateRetrying: retrying.Val(),
		StateBlocked:  blocked.Val(),
	}, nil
}

// OldestPending is the age of the pool's oldest unacknowledged config (0:
// none), from the stream IDs (milliseconds of the Redis clock) of the
// first entry of the agent streams and the buffer.
func OldestPending(ctx context.Context, c redis.UniversalClient, k Keys) (time.Duration, error) {
	ctl, err := c.HMGet(ctx, k.Ctl(), "stream", "from_stream", "target_stream").Result()
	if err != nil {
		return 0, err
	}
	streams := []string{k.Buf()}
	for _, v := range ctl {
		if s := asString(v); s != "" {
			streams = append(streams, s)
		}
	}
	oldest := int64(0)
	for _, s := range streams {
		msgs, err := c.XRangeN(ctx, s, "-", "+", 1).Result()
		if err != nil {
			return 0, err
		}
		if len(msgs) == 0 {
			continue
		}
		ms, err := strconv.ParseInt(strings.SplitN(msgs[0].ID, "-", 2)[0], 10, 64)
		if err == nil && (oldest == 0 || ms < oldest) {
			oldest = ms
		}
	}
	if oldest == 0 {
		return 0, nil
	}
	now, err := serverNowMs(ctx, c, k.Ctl())
	if err != nil {
		return 0, err
	}
	return time.Duration(max(now-oldest, 0)) * time.Millisecond, nil
}

func (d *deviceCollector) update(ctx context.Context, k Keys, ch chan<- prometheus.Metric) error {
	counts, err := DeviceCounts(ctx, d.c.o.Client, k)
	if err != nil {
		return err
	}
	age, err := OldestPending(ctx, d.c.o.Client, k)
	if err != nil {
		return err
	}
	for _, s := range []string{StateOK, StateRetrying, StateBlocked} {
		ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(counts[s]), k.Pool(), s)
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age.Seconds(), k.Pool())
	return nil
}
