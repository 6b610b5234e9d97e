package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/app"
	"github.com/medicops/medic/exporter"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/queue"
	"github.com/medicops/medic/route"
	"github.com/medicops/medic/runbooks"
)

// maxAlertFile bounds the webhook payload `medic run` reads.
const maxAlertFile = 8 << 20

func init() {
	register("run", "Run the matching runbooks on this node once for an Alertmanager webhook payload; print the run records as JSON lines. Exit 0 only when every run recovered, was healthy or switched.", setupRun)
}

func setupRun(cmd *kingpin.CmdClause) action {
	host, _ := os.Hostname()
	configFile := cmd.Flag("config.file", "HCL file or directory of *.hcl files.").Required().String()
	alertFile := cmd.Flag("alert", "Alertmanager webhook payload (JSON); - reads standard input.").Required().String()
	nodeName := cmd.Flag("node.name", "This node's name: only its agents are acted on.").Default(host).String()
	timeout := cmd.Flag("run.timeout", "Upper bound for all runs together.").Default("10m").Duration()
	redisURL := cmd.Flag("redis.url", "The estate's Redis. With it, runs take the same per-agent lease as medic node and the bridge, and switchover runbooks can switch pools (through the bridges' coordinator). Without it the lease is in-process.").String()
	prefix := cmd.Flag("redis.prefix", "Key prefix in Redis.").Default(keys.DefaultPrefix).String()
	return func(ctx context.Context, logger *slog.Logger) error {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return runOnce(ctx, logger, runOptions{
			ConfigFile: *configFile, AlertFile: *alertFile, Node: *nodeName, RedisURL: *redisURL, Prefix: *prefix,
			Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin,
		})
	}
}

type runOptions struct {
	ConfigFile, AlertFile, Node string
	RedisURL, Prefix            string
	Stdout, Stderr              io.Writer
	Stdin                       io.Reader
}

func runOnce(ctx context.Context, logger *slog.Logger, o runOptions) error {
	if o.Node == "" {
		return errors.New("no node name: set --node.name")
	}
	cfg, diags := hcl.Load(o.ConfigFile)
	if diags.HasErrors() {
		_ = hcl.WriteDiagnostics(o.Stderr, diags, nil)
		return exitCode(1)
	}
	payload, err := readBounded(o.AlertFile, o.Stdin)
	if err != nil {
		return err
	}
	alerts, err := alert.Decode(payload)
	if err != nil {
		return fmt.Errorf("%s: not an Alertmanager webhook payload: %w", o.AlertFile, err)
	}

	// Decide first, so that nothing starts when there is nothing to do.
	type job struct {
		alert   alert.Alert
		runbook string
		agent   string
	}
	var jobs []job
	ok := true
	for _, a := range alerts {
		name := a.Labels["alertname"]
		if a.Status != "firing" {
			fmt.Fprintf(o.Stderr, "medic run: %s %s: %s, not run\n", name, a.Fingerprint, orDefault(a.Status, "no status"))
			continue
		}
		d := route.Decide(cfg, a)
		rb, agent := d.Runbook, d.Agent
		if rb == nil {
			fmt.Fprintf(o.Stderr, "medic run: %s %s: no runbook matches, not run\n", name, a.Fingerprint)
			continue
		}
		if d.AgentError != "" {
			fmt.Fprintf(o.Stderr, "medic run: %s %s: runbook %s: %s, not run\n", name, a.Fingerprint, rb.Name, d.AgentError)
			continue
		}
		if rb.Switchover != nil && o.RedisURL == "" {
			fmt.Fprintf(o.Stderr, "medic run: %s %s: runbook %s switches a pool, which needs --redis.url; not run\n", name, a.Fingerprint, rb.Name)
			ok = false
			continue
		}
		if rb.Switchover == nil {
			// An alert the bridge could not route (its agent has no node)
			// runs here when the agent does: medic run is told the node.
			if d.Node != "" && d.Node != o.Node {
				fmt.Fprintf(o.Stderr, "medic run: %s %s: agent %s is on node %s (%s), not %s; not run\n", name, a.Fingerprint, agent, d.Node, d.NodeFrom, o.Node)
				continue
			}
			def := onNode(cfg, o.Node, agent)
			if def == nil {
				fmt.Fprintf(o.Stderr, "medic run: %s %s: agent %s does not run on node %s; not run\n", name, a.Fingerprint, agent, o.Node)
				continue
			}
			if def.Supervised() {
				// Its process is a child of `medic node`: only that process
				// can restart it (its watchdog, or the bridge's job).
				fmt.Fprintf(o.Stderr, "medic run: %s %s: agent %s is a command agent supervised by medic node; medic run cannot restart it; not run\n", name, a.Fingerprint, agent)
				ok = false
				continue
			}
		}
		jobs = append(jobs, job{alert: a, runbook: rb.Name, agent: agent})
	}
	if len(jobs) == 0 {
		if !ok {
			return exitCode(1)
		}
		return nil
	}

	var locker runbooks.Locker = runbooks.NewMemoryLocker()
	var switcher runbooks.Switcher
	if o.RedisURL != "" {
		client, err := redisx.New(o.RedisURL)
		if err != nil {
			return err
		}
		defer client.Close()
		locker = runbooks.NewRedisLocker(client, o.Prefix).WithLogger(logger)
		// Not run: Switchover only asks the leased coordinator of the
		// bridges to switch, and waits for it.
		coord, err := queue.NewCoordinator(queue.CoordinatorOptions{Client: client, Prefix: o.Prefix, Pools: app.PoolSpecs(cfg), Logger: logger})
		if err != nil {
			return err
		}
		switcher = coord
	}
	agents, stop, err := attachAgents(ctx, logger, cfg, o.Node)
	if err != nil {
		return err
	}
	defer stop()
	engine := runbooks.New(runbooks.Options{
		Config:   func() *hcl.Config { return cfg },
		Node:     o.Node,
		Agents:   agents,
		Locker:   locker,
		Switcher: switcher,
		Logger:   logger,
	})
	enc := json.NewEncoder(o.Stdout)
	for _, j := range jobs {
		rec := engine.Run(ctx, runbooks.Request{Runbook: j.runbook, Agent: j.agent, Alert: j.alert, Trigger: runbooks.TriggerManual})
		if err := enc.Encode(rec); err != nil {
			return err
		}
		switch rec.Outcome {
		case runbooks.OutcomeRecovered, runbooks.OutcomeHealthy, runbooks.OutcomeSwitched:
		default:
			ok = false
		}
	}
	if !ok {
		return exitCode(1)
	}
	return nil
}

func onNode(cfg *hcl.Config, node, agent string) *hcl.Agent {
	for _, a := range cfg.AgentsForNode(node) {
		if a.Name == agent {
			return a
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// isStdin reports whether a file argument means standard input. kingpin
// hands a bare "-" argument over as "" (its lexer turns "-" into an empty
// argument token), so `medic publish ... -` and `--alert -` arrive as "".
func isStdin(path string) bool { return path == "-" || path == "" }

func readBounded(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if !isStdin(path) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxAlertFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxAlertFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxAlertFile)
	}
	return b, nil
}

// attachAgents gives `medic run` the node's view of its pidfile agents,
// driven through the exporter exactly as `medic node` drives them. `command`
// agents are left out: they are children of the running `medic node`, and a
// child started by this one-shot process would die with it.
func attachAgents(ctx context.Context, logger *slog.Logger, cfg *hcl.Config, node string) (runbooks.Agents, func(), error) {
	external := &hcl.Config{Pools: cfg.Pools, Runbooks: cfg.Runbooks, Sources: cfg.Sources}
	for _, a := range cfg.AgentsForNode(node) {
		if !a.Supervised() {
			external.Agents = append(external.Agents, a)
		}
	}
	n, err := exporter.New(exporter.Options{Config: external, NodeName: node, Logger: logger, DisableProbeLoop: true})
	if err != nil {
		return nil, nil, err
	}
	nctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(nctx) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	return &runAgents{Agents: n, done: done}, stop, nil
}

// runAgents waits for the node to be running before its first restart.
type runAgents struct {
	runbooks.Agents
	done <-chan error
}

func (r *runAgents) Restart(ctx context.Context, agent string) error {
	// The node's Run goroutine may not have marked its agents as running
	// yet when the first restart comes; the exporter refuses a restart
	// then, before doing anything, so retrying is safe.
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := r.Agents.Restart(ctx, agent)
		if err == nil || !strings.Contains(err.Error(), "node not running") || time.Now().After(deadline) {
			return err
		}
		select {
		case err := <-r.done:
			return fmt.Errorf("node stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
