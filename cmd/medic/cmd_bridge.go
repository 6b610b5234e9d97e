package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
)

func init() {
	register("bridge", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("bridge: not implemented yet") }
	})
	register("serve", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("serve: not implemented yet") }
	})
	register("demo", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("demo: not implemented yet") }
	})
}
