package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
)

func init() {
	register("run", "(not implemented yet)", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error { return errors.New("run: not implemented yet") }
	})
}
