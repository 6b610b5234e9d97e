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
	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/medicops/medic/alert"
	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/route"
)

func init() {
	register("validate", "Check HCL files; print diagnostics as file:line:col: severity: summary; exit 1 on any error.", setupValidate)
	register("fmt", "Rewrite HCL files in canonical format (--check only lists them).", setupFmt)
	register("plan", "Dry run: which runbook, agent, node and steps each alert of a webhook payload would get.", setupPlan)
}

func setupValidate(cmd *kingpin.CmdClause) action {
	paths := cmd.Arg("path", "HCL files or directories of *.hcl files, loaded as one configuration; - reads standard input.").Required().Strings()
	format := cmd.Flag("format", "Output format: text or json.").Default("text").Enum("text", "json")
	return func(context.Context, *slog.Logger) error {
		return validate(*paths, *format, os.Stdout)
	}
}

// validate loads the paths as one configuration and prints every
// diagnostic; exitCode(1) when any is an error.
func validate(paths []string, format string, stdout io.Writer) error {
	srcs, diags := readSources(paths, os.Stdin)
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

// stdinName is the name diagnostics give to a configuration read from
// standard input ("-").
const stdinName = "<stdin>"

// maxStdinConfig bounds a configuration read from standard input.
const maxStdinConfig = 64 << 20

// readSources reads the paths like hcl.ReadSources; "-" (which kingpin
// hands over as "") reads standard input, once.
func readSources(paths []string, stdin io.Reader) ([]hcl.Source, hcl2.Diagnostics) {
	var files []string
	var fromStdin bool
	for _, p := range paths {
		if isStdin(p) {
			fromStdin = true
		} else {
			files = append(files, p)
		}
	}
	var srcs []hcl.Source
	var diags hcl2.Diagnostics
	if len(files) > 0 {
		srcs, diags = hcl.ReadSources(files...)
	}
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, maxStdinConfig+1))
		switch {
		case err != nil:
			diags = append(diags, &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: "Cannot read configuration", Detail: "standard input: " + err.Error()})
		case len(b) > maxStdinConfig:
			diags = append(diags, &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: "Configuration too large", Detail: fmt.Sprintf("standard input holds more than %d bytes", maxStdinConfig)})
		default:
			srcs = append(srcs, hcl.Source{Name: stdinName, Bytes: b})
		}
	}
	return srcs, diags
}

func sourceMap(srcs []hcl.Source) map[string][]byte {
	m := make(map[string][]byte, len(srcs))
	for _, s := range srcs {
		m[s.Name] = s.Bytes
	}
	return m
}

func setupFmt(cmd *kingpin.CmdClause) action {
	paths := cmd.Arg("path", "HCL files or directories of *.hcl files; - formats standard input to standard output.").Required().Strings()
	check := cmd.Flag("check", "Only list the files that are not formatted; exit 1 if there are any.").Bool()
	return func(context.Context, *slog.Logger) error {
		return formatFiles(*paths, *check, os.Stdout, os.Stderr)
	}
}

// formatFiles lists on stdout each file that is (or, with check, would be)
// rewritten. A file that does not parse is reported and left alone.
func formatFiles(paths []string, check bool, stdout, stderr io.Writer) error {
	srcs, diags := readSources(paths, os.Stdin)
	changed := 0
	for _, src := range srcs {
		out, d := hcl.Format(src)
		diags = append(diags, d...)
		if src.Name == stdinName && !check {
			// `medic fmt -` is a filter, for editors: the result goes to
			// standard output (the input as is when it does not parse).
			if d.HasErrors() {
				out = src.Bytes
			}
			if _, err := stdout.Write(out); err != nil {
				return err
			}
			continue
		}
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
	alerts, err := alert.Decode(payload)
	if err != nil {
		return fmt.Errorf("%s: not an Alertmanager webhook payload: %w", alertFile, err)
	}
	return hcl.WritePlan(stdout, route.Plan(cfg, alerts))
}
