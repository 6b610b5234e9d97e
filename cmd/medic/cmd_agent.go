package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
)

func init() {
	register("agent", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("agent: not implemented yet") }
	})
	register("publish", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("publish: not implemented yet") }
	})
}
