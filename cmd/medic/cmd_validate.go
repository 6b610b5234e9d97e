package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
)

func init() {
	register("validate", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("validate: not implemented yet") }
	})
	register("fmt", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("fmt: not implemented yet") }
	})
	register("plan", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("plan: not implemented yet") }
	})
}
