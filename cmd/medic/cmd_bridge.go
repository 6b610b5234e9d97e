package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/medicops/medic/app"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/jobs"
)

func init() {
	register("bridge", "Alertmanager webhook receiver, run records API, pool API and coordinator.", func(cmd *kingpin.CmdClause) action {
		o := appFlags(cmd, ":9095", true)
		return func(ctx context.Context, logger *slog.Logger) error {
			opts, err := o()
			if err != nil {
				return err
			}
			opts.Logger = logger
			return app.Run(ctx, opts)
		}
	})
	register("serve", "Bridge and node (and pool coordinator) in one process; without --redis.url an embedded, non-durable store.", func(cmd *kingpin.CmdClause) action {
		o := appFlags(cmd, "127.0.0.1:9095", false)
		host, _ := os.Hostname()
		node := cmd.Flag("node.name", "This node's name: only its agents are acted on.").Default(host).String()
		concurrency := cmd.Flag("node.jobs", "Jobs the node runs at once (runs for one agent are serialised by its lease).").Default("4").Int()
		return func(ctx context.Context, logger *slog.Logger) error {
			opts, err := o()
			if err != nil {
				return err
			}
			opts.Logger = logger
			opts.Node = *node
			opts.Concurrency = *concurrency
			return app.Run(ctx, opts)
		}
	})
	register("demo", "medic serve on a bundled example estate with demo agents, a pool of two demo config agents and a built-in device; prints what to try.", func(cmd *kingpin.CmdClause) action {
		listen := cmd.Flag("web.listen-address", "Address of the demo's bridge.").Default("127.0.0.1:9095").String()
		return func(ctx context.Context, logger *slog.Logger) error {
			return app.RunDemo(ctx, app.DemoOptions{Listen: *listen, Logger: logger})
		}
	})
	register("demo-agent", "A tiny agent for the demo estate.", func(cmd *kingpin.CmdClause) action {
		cmd.Hidden()
		var o app.DemoAgentOptions
		cmd.Flag("name", "Agent name.").Default("demo-agent").StringVar(&o.Name)
		cmd.Flag("listen", "HTTP address.").Default("127.0.0.1:0").StringVar(&o.Listen)
		cmd.Flag("heartbeat-url", "medic node base URL to heartbeat to.").StringVar(&o.HeartbeatURL)
		cmd.Flag("heartbeat-timeout", "Timeout sent with each heartbeat.").Default("5s").DurationVar(&o.HeartbeatTimeout)
		cmd.Flag("heartbeat-interval", "Heartbeat period.").Default("1s").DurationVar(&o.HeartbeatInterval)
		cmd.Flag("pool", "Also be a config agent (agent ID: --name) of this pool, as medic agent is.").StringVar(&o.Pool)
		cmd.Flag("config.file", "HCL holding the --pool block.").StringVar(&o.ConfigFile)
		cmd.Flag("redis.url", "Redis of the --pool.").StringVar(&o.RedisURL)
		return func(ctx context.Context, logger *slog.Logger) error {
			o.Logger = logger
			return app.RunDemoAgent(ctx, o)
		}
	})
}

// appFlags declares the flags bridge and serve share and returns a
// function that builds app.Options from them after parsing.
func appFlags(cmd *kingpin.CmdClause, listen string, redisRequired bool) func() (app.Options, error) {
	configFile := cmd.Flag("config.file", "HCL file or directory of *.hcl files.").Required().String()
	redisFlag := cmd.Flag("redis.url", "Redis URL: redis://, rediss://, redis+cluster://, redis+sentinel://.")
	if redisRequired {
		redisFlag = redisFlag.Required()
	}
	redisURL := redisFlag.String()
	prefix := cmd.Flag("redis.prefix", "Prefix of every Redis key.").Default(keys.DefaultPrefix).String()
	web := kingpinflag.AddFlags(cmd, listen)
	tokenFile := cmd.Flag("bridge.token-file", "File holding the bearer token the webhook and other writes require (Alertmanager: http_config.authorization).").String()
	maxBody := cmd.Flag("bridge.max-body", "Largest webhook body accepted; larger ones get 413.").Default("1MiB").Bytes()
	dedupTTL := cmd.Flag("bridge.dedup-ttl", "How long an alert episode (fingerprint + startsAt) is remembered.").Default(jobs.DefaultDedupTTL.String()).Duration()
	deadline := cmd.Flag("bridge.job-deadline", "How long a job may wait for its node before it is recorded as expired instead of run late.").Default(jobs.DefaultJobDeadline.String()).Duration()
	silence := cmd.Flag("bridge.node-silence", "How long a node may go without writing its state snapshot and still be given jobs; an alert for a node unknown or silent longer is recorded unroutable and escalated at once. 0 turns the check off.").Default(jobs.DefaultNodeSilence.String()).Duration()
	retention := cmd.Flag("runs.retention", "How long run records are kept.").Default(jobs.DefaultRunRetention.String()).Duration()
	maxRuns := cmd.Flag("runs.max", "How many run records are kept.").Default("10000").Int()
	pprof := cmd.Flag("web.enable-pprof", "Serve Go's net/http/pprof profiles under /debug/pprof/ (off by default).").Default("false").Bool()
	return func() (app.Options, error) {
		if *web.WebSystemdSocket {
			return app.Options{}, errors.New("--web.systemd-socket is not supported: use --web.listen-address")
		}
		// Zero or negative values would silently mean the defaults.
		for _, d := range []struct {
			flag string
			v    time.Duration
		}{{"--bridge.dedup-ttl", *dedupTTL}, {"--bridge.job-deadline", *deadline}, {"--runs.retention", *retention}} {
			if d.v <= 0 {
				return app.Options{}, fmt.Errorf("%s must be a positive duration, not %s", d.flag, d.v)
			}
		}
		if *silence < 0 || (*silence > 0 && *silence < jobs.MinNodeSilence) {
			return app.Options{}, fmt.Errorf("--bridge.node-silence must be 0 (off) or at least %s (three state snapshots), not %s", jobs.MinNodeSilence, *silence)
		}
		if *maxRuns < 1 {
			return app.Options{}, fmt.Errorf("--runs.max must be at least 1, not %d", *maxRuns)
		}
		if *maxBody < 1 {
			return app.Options{}, fmt.Errorf("--bridge.max-body must be positive, not %d", *maxBody)
		}
		return app.Options{
			ConfigFile: *configFile, RedisURL: *redisURL, Prefix: *prefix,
			ListenAddresses: *web.WebListenAddresses, WebConfigFile: *web.WebConfigFile, TokenFile: *tokenFile,
			MaxBody: int64(*maxBody), DedupTTL: *dedupTTL, JobDeadline: *deadline, NodeSilence: *silence,
			RunRetention: *retention, MaxRuns: *maxRuns, EnablePprof: *pprof,
		}, nil
	}
}
