package main

// `medic test` (this file is not cmd_test.go: a name ending in _test.go
// would make it a Go test file).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/simulate"
)

func init() {
	register("test", "Run runbook tests (*.test.hcl) against the real router and engine in a simulated world, in virtual time; one line per test, then \"N passed, N failed\"; exit 1 on any failure.", setupRunbookTest)
}

func setupRunbookTest(cmd *kingpin.CmdClause) action {
	paths := cmd.Arg("path", "Test files, or directories searched for *.test.hcl files.").Required().Strings()
	junit := cmd.Flag("junit", "Also write the results as JUnit XML to this file.").PlaceHolder("FILE").String()
	coverage := cmd.Flag("coverage", "List every cause and mode path (repair, restart, budget exhausted, escalate, …) of each runbook that no test exercised.").Bool()
	config := cmd.Flag("config.file", "Test this configuration (file or directory; repeatable) instead of each test file's own `config`.").PlaceHolder("PATH").Strings()
	return func(ctx context.Context, _ *slog.Logger) error {
		return runbookTest(ctx, testOptions{Paths: *paths, JUnit: *junit, Coverage: *coverage, Config: *config}, os.Stdout, os.Stderr)
	}
}

type testOptions struct {
	Paths    []string
	JUnit    string
	Coverage bool
	Config   []string
}

func runbookTest(ctx context.Context, o testOptions, stdout, stderr io.Writer) error {
	suite, diags := simulate.LoadSuite(o.Paths, o.Config)
	if len(diags) > 0 {
		if err := hcl.WriteDiagnostics(stderr, diags, suite.Sources); err != nil {
			return err
		}
	}
	if diags.HasErrors() {
		return exitCode(1)
	}
	rep := suite.Run(ctx)
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if o.Coverage {
		if err := simulate.WriteCoverage(stdout, rep.Coverage()); err != nil {
			return err
		}
	}
	if o.JUnit != "" {
		f, err := os.Create(o.JUnit)
		if err != nil {
			return err
		}
		err = rep.WriteJUnit(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("--junit: %w", err)
		}
	}
	if rep.Failed > 0 {
		return exitCode(1)
	}
	return nil
}
