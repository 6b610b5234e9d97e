package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/simulate"
)

func init() {
	register("backtest", "Replay the firing history of ALERTS{alertstate=\"firing\"} from Prometheus through the same router and safety controls (concurrency, circuit, budget, mode) in virtual time; report what the runbooks would have done.", setupBacktest)
}

func setupBacktest(cmd *kingpin.CmdClause) action {
	o := backtestOptions{}
	cmd.Flag("config.file", "HCL file or directory of *.hcl files.").Required().StringVar(&o.ConfigFile)
	cmd.Flag("prometheus.url", "Prometheus to read the alert history from, e.g. http://127.0.0.1:9090.").Required().StringVar(&o.PrometheusURL)
	cmd.Flag("from", "Start: now, -7d (before now), RFC 3339 or Unix seconds.").Default("-7d").StringVar(&o.From)
	cmd.Flag("to", "End: now, -1h, RFC 3339 or Unix seconds.").Default("now").StringVar(&o.To)
	cmd.Flag("run-duration", "How long each simulated run lasts (holding its concurrency slot and lease).").Default("1m").DurationVar(&o.RunDuration)
	cmd.Flag("format", "Output format: text or json.").Default("text").EnumVar(&o.Format, "text", "json")
	return func(ctx context.Context, _ *slog.Logger) error {
		return backtest(ctx, o, time.Now(), os.Stdout, os.Stderr)
	}
}

type backtestOptions struct {
	ConfigFile, PrometheusURL string
	From, To                  string
	RunDuration               time.Duration
	Format                    string
}

func backtest(ctx context.Context, o backtestOptions, now time.Time, stdout, stderr io.Writer) error {
	from, err := parseTime(o.From, now)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	to, err := parseTime(o.To, now)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	// Prometheus takes whole seconds; the report says what was asked.
	from, to = from.Truncate(time.Second), to.Truncate(time.Second)
	if !from.Before(to) {
		return fmt.Errorf("--from %s is not before --to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if o.RunDuration <= 0 {
		return errors.New("--run-duration must be longer than zero")
	}
	cfg, diags := hcl.Load(o.ConfigFile)
	if diags.HasErrors() {
		srcs, _ := hcl.ReadSources(o.ConfigFile)
		_ = hcl.WriteDiagnostics(stderr, diags, sourceMap(srcs))
		return exitCode(1)
	}
	p := &simulate.Prometheus{URL: o.PrometheusURL}
	series, err := p.History(ctx, from, to, simulate.HistoryStep)
	if err != nil {
		return err
	}
	rep, err := simulate.Backtest(ctx, cfg, simulate.Episodes(series, simulate.HistoryStep), from, to, o.RunDuration)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}

// parseTime reads now, -DURATION (before now, Prometheus units: -7d,
// -90m), RFC 3339 or Unix seconds.
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		d, err := model.ParseDuration(s[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want now, -7d, an RFC 3339 time or Unix seconds", s)
		}
		return now.Add(-time.Duration(d)), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.UnixMilli(int64(f * 1000)), nil
	}
	return time.Time{}, fmt.Errorf("%q: want now, -7d, an RFC 3339 time or Unix seconds", s)
}
