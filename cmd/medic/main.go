package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/medicops/medic/internal/redisx"
)

// action runs a parsed subcommand.
type action func(ctx context.Context, logger *slog.Logger) error

// command is one subcommand; each lives in its own cmd_*.go file and
// registers itself from init.
type command struct {
	name, help string
	setup      func(cmd *kingpin.CmdClause) action
}

var commands []command

func register(name, help string, setup func(cmd *kingpin.CmdClause) action) {
	commands = append(commands, command{name, help, setup})
}

// exitCode is returned by actions that have already reported their problem
// (e.g. validate's diagnostics) and only need a non-zero exit.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	os.Exit(runMain(os.Args[1:]))
}

func runMain(args []string) int {
	app := kingpin.New("medic", "Prometheus-driven alert remediation bridge.")
	app.Version(version.Print("medic"))
	app.HelpFlag.Short('h')
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)

	actions := map[string]action{}
	for _, c := range commands {
		cmd := app.Command(c.name, c.help)
		actions[c.name] = c.setup(cmd)
	}
	selected, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "medic: %v (try --help)\n", err)
		return 2
	}
	logger := promslog.New(logCfg)
	redisx.SetLogger(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := actions[selected](ctx, logger); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		fmt.Fprintf(os.Stderr, "medic %s: %v\n", selected, err)
		return 1
	}
	return 0
}
