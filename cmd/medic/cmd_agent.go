package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/app"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/queue"
)

func init() {
	register("agent", "Reference device-config agent of a pool: delivers the pool's configs to its devices, in order, while it is the active agent.", setupAgent)
	register("publish", "Publish one config (a JSON file, - for standard input) for a device into a pool; prints {\"id\",\"seq\"}.", setupPublish)
}

type agentOptions struct {
	ConfigFile, RedisURL, Prefix, Pool, ID, Host string
	DeviceURL                                    string // overrides the pool's device_url
	HeartbeatInterval, HeartbeatTimeout          time.Duration
	RequestTimeout                               time.Duration
	Listen, WebConfigFile                        string
	EnablePprof                                  bool
}

func setupAgent(cmd *kingpin.CmdClause) action {
	var o agentOptions
	host, _ := os.Hostname()
	cmd.Flag("config.file", "HCL file or directory of *.hcl files holding the pool block.").StringVar(&o.ConfigFile)
	cmd.Flag("redis.url", "Redis URL: redis://, rediss://, redis+cluster://, redis+sentinel://.").Required().StringVar(&o.RedisURL)
	cmd.Flag("redis.prefix", "Prefix of every Redis key.").Default(keys.DefaultPrefix).StringVar(&o.Prefix)
	cmd.Flag("pool", "The pool this agent serves.").Required().StringVar(&o.Pool)
	cmd.Flag("agent.id", "This agent's ID (one of the pool's agents).").Required().StringVar(&o.ID)
	cmd.Flag("agent.host", "Host name shown in the pool's status.").Default(host).StringVar(&o.Host)
	cmd.Flag("device.url", "Device URL template over ${device}, instead of the pool's device_url (then --config.file is optional).").StringVar(&o.DeviceURL)
	cmd.Flag("agent.heartbeat-interval", "Heartbeat period; default a quarter of the pool's check_interval, at most 1s.").DurationVar(&o.HeartbeatInterval)
	cmd.Flag("agent.heartbeat-timeout", "After this long without a heartbeat the coordinator replaces the agent; default 4 heartbeat intervals.").DurationVar(&o.HeartbeatTimeout)
	cmd.Flag("agent.request-timeout", "Timeout of one POST to a device.").Default("10s").DurationVar(&o.RequestTimeout)
	cmd.Flag("web.listen-address", "Address for /metrics and /-/healthy; empty: none.").Default("").StringVar(&o.Listen)
	cmd.Flag("web.config.file", "exporter-toolkit web config (TLS, basic auth) for --web.listen-address.").StringVar(&o.WebConfigFile)
	cmd.Flag("web.enable-pprof", "Serve Go's /debug/pprof/ profiles on --web.listen-address (off by default: profiles reveal internals and cost CPU while taken).").Default("false").BoolVar(&o.EnablePprof)
	return func(ctx context.Context, logger *slog.Logger) error { return runAgent(ctx, logger, o) }
}

func runAgent(ctx context.Context, logger *slog.Logger, o agentOptions) error {
	var pool *hcl.Pool
	if o.ConfigFile != "" {
		cfg, diags := hcl.Load(o.ConfigFile)
		if diags.HasErrors() {
			_ = hcl.WriteDiagnostics(os.Stderr, diags, nil)
			return exitCode(1)
		}
		if pool = cfg.Pool(o.Pool); pool == nil {
			return fmt.Errorf("no pool %q in %s", o.Pool, o.ConfigFile)
		}
		if len(pool.Agents) > 0 && !slices.Contains(pool.Agents, o.ID) {
			return fmt.Errorf("agent %q is not one of pool %q's agents %v: the coordinator would never choose it", o.ID, o.Pool, pool.Agents)
		}
	}
	deviceURL, err := deviceURLFunc(pool, o.DeviceURL)
	if err != nil {
		return err
	}
	if o.EnablePprof && o.Listen == "" {
		return errors.New("--web.enable-pprof needs --web.listen-address")
	}
	if o.WebConfigFile != "" {
		if o.Listen == "" {
			return errors.New("--web.config.file needs --web.listen-address")
		}
		if err := web.Validate(o.WebConfigFile); err != nil {
			return fmt.Errorf("--web.config.file %s: %w", o.WebConfigFile, err)
		}
	}
	if o.HeartbeatInterval <= 0 {
		check := hcl.DefaultCheckInterval
		if pool != nil && pool.CheckInterval > 0 {
			check = pool.CheckInterval
		}
		o.HeartbeatInterval = min(max(check/4, 50*time.Millisecond), time.Second)
	}
	maxAttempts := queue.DefaultMaxAttempts
	if pool != nil && pool.MaxAttempts > 0 {
		maxAttempts = pool.MaxAttempts
	}
	client, err := redisx.New(o.RedisURL)
	if err != nil {
		return err
	}
	defer client.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := queue.NewConsumer(queue.ConsumerOptions{
		Client: client, Prefix: o.Prefix, Pool: o.Pool, Agent: o.ID, Host: o.Host,
		DeviceURL: deviceURL, RequestTimeout: o.RequestTimeout,
		HeartbeatInterval: o.HeartbeatInterval, HeartbeatTimeout: o.HeartbeatTimeout,
		MaxAttempts: maxAttempts,
		Logger:      logger, Metrics: queue.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	if o.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "OK\n") })
		if o.EnablePprof {
			app.MountPprof(mux)
		}
		srv := app.ServerTimeouts{}.Server(mux)
		addrs := []string{o.Listen}
		errc := make(chan error, 1)
		go func() {
			errc <- web.ListenAndServe(srv, &web.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &o.WebConfigFile}, logger)
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		select {
		case err := <-errc:
			return fmt.Errorf("web server: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	logger.Info("agent starting", "pool", o.Pool, "agent", o.ID, "heartbeat", o.HeartbeatInterval)
	return c.Run(ctx)
}

// deviceURLFunc renders device URLs from the pool's device_url, or from an
// explicit template over ${device} (the device ID escaped: hcl.EscapeDevice).
func deviceURLFunc(pool *hcl.Pool, template string) (func(string) (string, error), error) {
	if template != "" {
		if !strings.Contains(template, "${device}") {
			return nil, fmt.Errorf("--device.url %q does not mention ${device}", template)
		}
		u, err := url.Parse(strings.ReplaceAll(template, "${device}", "x"))
		if err != nil {
			return nil, fmt.Errorf("--device.url: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--device.url %q: want an http:// or https:// URL with a host, e.g. http://${device}.example/api/config", template)
		}
		probe, _ := url.Parse(strings.ReplaceAll(template, "${device}", "medicdeviceprobe"))
		inHost := probe != nil && strings.Contains(probe.Host, "medicdeviceprobe")
		return func(d string) (string, error) {
			if inHost && !hcl.IsDNSLabel(d) {
				return "", fmt.Errorf("device %q: --device.url puts the device in the URL's host, so a device ID must be one DNS label", d)
			}
			return strings.ReplaceAll(template, "${device}", hcl.EscapeDevice(d)), nil
		}, nil
	}
	if pool == nil {
		return nil, errors.New("no device URL: give --config.file (the pool's device_url) or --device.url")
	}
	if _, err := pool.DeviceURLFor("probe"); err != nil {
		return nil, fmt.Errorf("pool %q device_url: %w", pool.Name, err)
	}
	return pool.DeviceURLFor, nil
}

type publishOptions struct {
	ConfigFile, RedisURL, Prefix, Pool, Device, IdempotencyKey, File string
	Timeout                                                          time.Duration
}

func setupPublish(cmd *kingpin.CmdClause) action {
	var o publishOptions
	cmd.Flag("config.file", "HCL config; with it, a publish that activates the pool's first agent only picks one of the pool's agents.").StringVar(&o.ConfigFile)
	cmd.Flag("redis.url", "Redis URL: redis://, rediss://, redis+cluster://, redis+sentinel://.").Required().StringVar(&o.RedisURL)
	cmd.Flag("redis.prefix", "Prefix of every Redis key.").Default(keys.DefaultPrefix).StringVar(&o.Prefix)
	cmd.Flag("pool", "The pool to publish into.").Required().StringVar(&o.Pool)
	cmd.Flag("device", "The device the config is for.").Required().StringVar(&o.Device)
	cmd.Flag("idempotency-key", "Retries with the same key publish once and print the first result.").StringVar(&o.IdempotencyKey)
	cmd.Flag("timeout", "Give up after this long.").Default("10s").DurationVar(&o.Timeout)
	cmd.Arg("FILE", "The config payload (JSON); - reads standard input.").Required().StringVar(&o.File)
	return func(ctx context.Context, logger *slog.Logger) error {
		return runPublish(ctx, o, os.Stdin, os.Stdout, os.Stderr)
	}
}

func runPublish(ctx context.Context, o publishOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	var r io.Reader = stdin
	if !isStdin(o.File) {
		f, err := os.Open(o.File)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	payload, err := io.ReadAll(io.LimitReader(r, queue.MaxPayload+1))
	if err != nil {
		return err
	}
	if len(payload) > queue.MaxPayload {
		return fmt.Errorf("%s: larger than %d bytes", o.File, queue.MaxPayload)
	}
	agents := map[string][]string{}
	if o.ConfigFile != "" {
		cfg, diags := hcl.Load(o.ConfigFile)
		if diags.HasErrors() {
			_ = hcl.WriteDiagnostics(os.Stderr, diags, nil)
			return exitCode(1)
		}
		p := cfg.Pool(o.Pool)
		if p == nil {
			return fmt.Errorf("no pool %q in %s", o.Pool, o.ConfigFile)
		}
		agents[o.Pool] = p.Agents
		if err := p.CheckDevice(o.Device); err != nil {
			return err
		}
	}
	client, err := redisx.New(o.RedisURL)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if o.ConfigFile == "" {
		warnUnknownPool(ctx, client, o.Prefix, o.Pool, stderr)
	}
	pub := queue.NewPublisher(queue.PublisherOptions{Client: client, Prefix: o.Prefix, Agents: agents})
	res, err := pub.Publish(ctx, o.Pool, o.Device, payload, o.IdempotencyKey)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// warnUnknownPool warns when nothing in Redis knows the pool: no
// coordinator has held it, no agent has registered and nothing was
// published. Without --config.file a misspelt --pool would otherwise create
// a pool no agent serves, and the config would wait there unseen. It only
// warns: a platform may publish before the pool's first agent starts.
func warnUnknownPool(ctx context.Context, client redis.UniversalClient, prefix, pool string, stderr io.Writer) {
	k, err := queue.NewKeys(prefix, pool)
	if err != nil {
		return // Publish reports the bad name
	}
	n := int64(0)
	for _, key := range []string{k.Ctl(), k.Agents(), k.Lease(), k.Seq()} {
		// One key at a time: on Redis Cluster they share a slot anyway.
		m, err := client.Exists(ctx, key).Result()
		if err != nil {
			return // Publish reports Redis errors
		}
		n += m
	}
	if n == 0 {
		fmt.Fprintf(stderr, "medic publish: warning: Redis knows no pool %q (no coordinator, no registered agent, nothing published before); "+
			"check the name, or give --config.file to check it against the configuration\n", pool)
	}
}
