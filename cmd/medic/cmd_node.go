package main

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/medicops/medic/app"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/internal/keys"
)

func init() {
	register("node", "Exporter, heartbeat API, supervisor of command agents and executor of jobs for this node.", setupNode)
}

func setupNode(cmd *kingpin.CmdClause) action {
	host, _ := os.Hostname()
	var o app.NodeOptions
	cmd.Flag("config.file", "HCL file or directory of *.hcl files.").Required().StringVar(&o.ConfigFile)
	cmd.Flag("redis.url", "The estate's Redis (redis://, rediss://, redis+cluster://, redis+sentinel://). With it the node takes the shared per-agent lease, stores watchdog run records and publishes its state for the bridge's status page; without it the lease is in-process.").StringVar(&o.RedisURL)
	cmd.Flag("redis.prefix", "Prefix of every Redis key.").Default(keys.DefaultPrefix).StringVar(&o.Prefix)
	cmd.Flag("node.name", "This node's name: it runs the agents whose node is this name or unset.").Default(host).StringVar(&o.NodeName)
	cmd.Flag("node.stop-grace", "Time a stopped agent's process group gets between SIGTERM and SIGKILL.").Default(exporter.DefaultStopGrace.String()).DurationVar(&o.StopGrace)
	cmd.Flag("node.cpu-window", "Window over which usage.cpu is measured at diagnosis time.").Default(exporter.DefaultCPUWindow.String()).DurationVar(&o.CPUWindow)
	cmd.Flag("node.jobs", "Jobs from the bridge the node runs at once (runs for one agent are serialised by its lease; a run waiting for a concurrency slot or an approval holds one).").Default("4").IntVar(&o.Jobs)
	cmd.Flag("node.runtime-dir", "Directory for the agents' NOTIFY_SOCKETs and default working directories (default: a new temporary directory).").StringVar(&o.RuntimeDir)
	cmd.Flag("web.enable-pprof", "Serve Go's net/http/pprof profiles under /debug/pprof/ (off by default).").Default("false").BoolVar(&o.EnablePprof)
	webFlags := kingpinflag.AddFlags(cmd, ":9105")
	return func(ctx context.Context, logger *slog.Logger) error {
		if *webFlags.WebSystemdSocket {
			return errors.New("--web.systemd-socket is not supported: use --web.listen-address")
		}
		o.ListenAddresses = *webFlags.WebListenAddresses
		o.WebConfigFile = *webFlags.WebConfigFile
		o.Logger = logger
		return app.RunNode(ctx, o)
	}
}
