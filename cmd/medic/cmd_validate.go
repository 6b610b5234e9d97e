package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/medicops/medic/hcl"
)

func init() {
	register("validate", "Check HCL files; print diagnostics as file:line:col: severity: summary; exit 1 on any error.", setupValidate)
	register("fmt", "Rewrite HCL files in canonical format (--check only lists them).", setupFmt)
	register("plan", "Dry run: which runbook, agent, node and steps each alert of a webhook payload would get.", setupPlan)
}

func setupValidate(cmd *kingpin.CmdClause) action {
	paths := cmd.Arg("path", "HCL files or directories of *.hcl files, loaded as one configuration.").Required().Strings()
	format := cmd.Flag("format", "Output format: text or json.").Default("text").Enum("text", "json")
	return func(context.Context, *slog.Logger) error {
		return validate(*paths, *format, os.Stdout)
	}
}

// validate loads the paths as one configuration and prints every
// diagnostic; exitCode(1) when any is an error.
func validate(paths []string, format string, stdout io.Writer) error {
	srcs, diags := hcl.ReadSources(paths...)
	_, more := hcl.LoadSources(srcs)
	diags = append(diags, more...)
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(hcl.DiagnosticsJSON(diags)); err != nil {
			return err
		}
	} else if err := hcl.WriteDiagnostics(stdout, diags, sourceMap(srcs)); err != nil {
		return err
	}
	if diags.HasErrors() {
		return exitCode(1)
	}
	return nil
}

func sourceMap(srcs []hcl.Source) map[string][]byte {
	m := make(map[string][]byte, len(srcs))
	for _, s := range srcs {
		m[s.Name] = s.Bytes
	}
	return m
}

func setupFmt(cmd *kingpin.CmdClause) action {
	paths := cmd.Arg("path", "HCL files or directories of *.hcl files.").Required().Strings()
	check := cmd.Flag("check", "Only list the files that are not formatted; exit 1 if there are any.").Bool()
	return func(context.Context, *slog.Logger) error {
		return formatFiles(*paths, *check, os.Stdout, os.Stderr)
	}
}

// formatFiles lists on stdout each file that is (or, with check, would be)
// rewritten. A file that does not parse is reported and left alone.
func formatFiles(paths []string, check bool, stdout, stderr io.Writer) error {
	srcs, diags := hcl.ReadSources(paths...)
	changed := 0
	for _, src := range srcs {
		out, d := hcl.Format(src)
		diags = append(diags, d...)
		if d.HasErrors() || bytes.Equal(out, src.Bytes) {
			continue
		}
		changed++
		if !check {
			fi, err := os.Stat(src.Name)
			if err != nil {
				return err
			}
			if err := os.WriteFile(src.Name, out, fi.Mode().Perm()); err != nil {
				return err
			}
		}
		fmt.Fprintln(stdout, src.Name)
	}
	if err := hcl.WriteDiagnostics(stderr, diags, sourceMap(srcs)); err != nil {
		return err
	}
	if diags.HasErrors() || (check && changed > 0) {
		return exitCode(1)
	}
	return nil
}

func setupPlan(cmd *kingpin.CmdClause) action {
	configFile := cmd.Flag("config.file", "HCL file or directory of *.hcl files.").Required().String()
	alertFile := cmd.Flag("alert", "Alertmanager webhook payload (JSON, version 4); - reads standard input.").Required().String()
	return func(context.Context, *slog.Logger) error {
		return plan(*configFile, *alertFile, os.Stdout, os.Stderr)
	}
}

// maxPayload bounds the webhook payload plan reads, as the bridge bounds
// its request bodies.
const maxPayload = 16 << 20

// plan prints what medic would do for each alert of the payload. It reads
// the config and the payload and nothing else: no probe, no sample, no
// Redis, no script.
func plan(configFile, alertFile string, stdout, stderr io.Writer) error {
	srcs, diags := hcl.ReadSources(configFile)
	cfg, more := hcl.LoadSources(srcs)
	diags = append(diags, more...)
	if err := hcl.WriteDiagnostics(stderr, diags, sourceMap(srcs)); err != nil {
		return err
	}
	if diags.HasErrors() {
		return exitCode(1)
	}
	var r io.Reader = os.Stdin
	if !isStdin(alertFile) {
		f, err := os.Open(alertFile)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	payload, err := io.ReadAll(io.LimitReader(r, maxPayload+1))
	if err != nil {
		return err
	}
	if len(payload) > maxPayload {
		return fmt.Errorf("%s: payload larger than %d bytes", alertFile, maxPayload)
	}
	alerts, err := hcl.ParseWebhook(payload)
	if err != nil {
		return fmt.Errorf("%s: %w", alertFile, err)
	}
	return hcl.WritePlan(stdout, cfg.Plan(alerts))
}
