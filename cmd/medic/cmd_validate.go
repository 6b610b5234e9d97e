package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
		srcs, diags := hcl.ReadSources(*paths...)
		_, more := hcl.LoadSources(srcs)
		diags = append(diags, more...)
		if *format == "json" {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(hcl.DiagnosticsJSON(diags)); err != nil {
				return err
			}
		} else {
			sources := make(map[string][]byte, len(srcs))
			for _, s := range srcs {
				sources[s.Name] = s.Bytes
			}
			if err := hcl.WriteDiagnostics(os.Stdout, diags, sources); err != nil {
				return err
			}
		}
		if diags.HasErrors() {
			return exitCode(1)
		}
		return nil
	}
}

func setupFmt(cmd *kingpin.CmdClause) action {
	paths := cmd.Arg("path", "HCL files or directories of *.hcl files.").Required().Strings()
	check := cmd.Flag("check", "Only list the files that are not formatted; exit 1 if there are any.").Bool()
	return func(context.Context, *slog.Logger) error {
		srcs, diags := hcl.ReadSources(*paths...)
		sources := map[string][]byte{}
		changed := 0
		for _, src := range srcs {
			sources[src.Name] = src.Bytes
			out, d := hcl.Format(src)
			diags = append(diags, d...)
			if d.HasErrors() || bytes.Equal(out, src.Bytes) {
				continue
			}
			changed++
			if !*check {
				fi, err := os.Stat(src.Name)
				if err != nil {
					return err
				}
				if err := os.WriteFile(src.Name, out, fi.Mode().Perm()); err != nil {
					return err
				}
			}
			fmt.Println(src.Name)
		}
		if err := hcl.WriteDiagnostics(os.Stderr, diags, sources); err != nil {
			return err
		}
		if diags.HasErrors() || (*check && changed > 0) {
			return exitCode(1)
		}
		return nil
	}
}

func setupPlan(cmd *kingpin.CmdClause) action {
	configFile := cmd.Flag("config.file", "HCL file or directory of *.hcl files.").Required().String()
	alertFile := cmd.Flag("alert", "Alertmanager webhook payload (JSON, version 4).").Required().ExistingFile()
	return func(context.Context, *slog.Logger) error {
		srcs, diags := hcl.ReadSources(*configFile)
		cfg, more := hcl.LoadSources(srcs)
		diags = append(diags, more...)
		if diags.HasErrors() {
			sources := map[string][]byte{}
			for _, s := range srcs {
				sources[s.Name] = s.Bytes
			}
			_ = hcl.WriteDiagnostics(os.Stderr, diags, sources)
			return exitCode(1)
		}
		payload, err := os.ReadFile(*alertFile)
		if err != nil {
			return err
		}
		alerts, err := hcl.ParseWebhook(payload)
		if err != nil {
			return fmt.Errorf("%s: %w", *alertFile, err)
		}
		return hcl.WritePlan(os.Stdout, cfg.Plan(alerts))
	}
}
