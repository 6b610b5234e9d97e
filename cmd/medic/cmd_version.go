package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

func init() {
	register("version", "Print version, commit and Go version.", func(cmd *kingpin.CmdClause) action {
		return func(context.Context, *slog.Logger) error {
			fmt.Println(version.Print("medic"))
			return nil
		}
	})
}
