package probe

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/medicops/medic/internal/execx"
)

// Exec probes run an argv (never through a shell, with the agent's
// MEDIC_* variables); exit status 0 passes.
const Exec = "exec"

var execKind = Kind{
	Attributes: []hcl2.AttributeSchema{{Name: "command", Required: true}},
	Target:     func(c *Config) string { return "run " + argvText(c.Command) },
	Prober:     ExecProber{},
}

var _ Prober = ExecProber{}

// maxExecOutput bounds the output kept of an exec probe; its first 256
// bytes go into the detail of a failure.
const maxExecOutput = 4 << 10

// ExecProber runs exec probes through execx: the whole process group is
// killed at the timeout.
type ExecProber struct{}

func (ExecProber) Probe(ctx context.Context, c *Config, env map[string]string) (bool, string) {
	res := execx.Run(ctx, execx.Cmd{Argv: c.Command, Env: env, Timeout: c.Timeout, MaxOutput: maxExecOutput})
	if !res.OK() {
		return false, fmt.Sprintf("exec %s: %v: %s", c.Command[0], res.Err, truncate(res.Output, 256))
	}
	return true, fmt.Sprintf("exec %s: exit 0", c.Command[0])
}

// argvText is the argv as `medic plan` prints every command: ["a", "b"].
func argvText(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = strconv.Quote(a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
