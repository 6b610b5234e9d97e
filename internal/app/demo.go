package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/medicops/medic/deploy/examples/demo"
	"github.com/medicops/medic/runbooks/library"
)

// DemoNode is the node name of the demo estate.
const DemoNode = "demo"

// DemoOptions configure RunDemo.
type DemoOptions struct {
	// Listen is the bridge's address (default 127.0.0.1:9095).
	Listen string
	// Executable runs the demo agents (default: this binary).
	Executable string
	Logger     *slog.Logger
	// Out receives the instructions (default os.Stdout).
	Out io.Writer
	// OnListening is passed on to Run.
	OnListening func(addrs []string)
}

// RunDemo is `medic demo`: medic serve, with an embedded store, on the
// bundled estate (two demo agents, the library runbooks), written to a
// temporary directory that is removed on exit.
func RunDemo(ctx context.Context, o DemoOptions) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:9095"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("demo: find the medic binary: %w", err)
		}
		o.Executable = exe
	}
	listen, err := resolvePort(o.Listen)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "medic-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgDir := filepath.Join(dir, "config")
	ports := map[string]string{}
	for _, name := range []string{"WEB", "WORKER"} {
		a, err := resolvePort("127.0.0.1:0")
		if err != nil {
			return err
		}
		_, ports[name], _ = net.SplitHostPort(a)
	}
	repl := strings.NewReplacer(
		"@MEDIC@", o.Executable, "@DIR@", dir, "@NODE_URL@", "http://"+listen,
		"@PORT_WEB@", ports["WEB"], "@PORT_WORKER@", ports["WORKER"],
	)
	if err := writeFS(cfgDir, demo.FS, repl); err != nil {
		return err
	}
	if err := writeFS(cfgDir, library.FS, nil); err != nil {
		return err
	}
	for _, a := range []string{"demo-web", "demo-worker"} {
		if err := os.MkdirAll(filepath.Join(dir, a), 0o755); err != nil {
			return err
		}
	}
	err = Run(ctx, Options{
		ConfigFile: cfgDir, Node: DemoNode, ListenAddresses: []string{listen}, Logger: o.Logger,
		OnListening: func(addrs []string) {
			printDemo(o.Out, o.Executable, addrs[0], cfgDir, ports)
			if o.OnListening != nil {
				o.OnListening(addrs)
			}
		},
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		// Most often a demo started earlier and still running.
		return fmt.Errorf("%w (is another medic demo running? choose another with --web.listen-address)", err)
	}
	return err
}

// resolvePort turns HOST:0 into HOST:FREEPORT, because the estate's
// heartbeat URL must name the bridge's port before it listens.
func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--web.listen-address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func writeFS(dst string, src fs.FS, repl *strings.Replacer) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	names, err := fs.Glob(src, "*.hcl")
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := fs.ReadFile(src, n)
		if err != nil {
			return err
		}
		if repl != nil {
			data = []byte(repl.Replace(string(data)))
		}
		if err := os.WriteFile(filepath.Join(dst, n), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func printDemo(w io.Writer, exe, addr, cfgDir string, ports map[string]string) {
	base := "http://" + addr
	web := "http://127.0.0.1:" + ports["WEB"]
	fmt.Fprintf(w, `
medic demo is running: bridge + node %q in one process, an embedded in-memory
store (nothing is kept after exit), two demo agents (demo-web on %s,
demo-worker on 127.0.0.1:%s) and the library runbooks from %s.

  status page   %s/
  run records   %s/api/v1/runs
  metrics       %s/metrics

Try, in another terminal:

  # 1. Fire an alert the way Alertmanager does. The bridge routes it to node
  #    "demo"; the engine finds demo-web alive and its probe passing: "healthy".
  curl -s -XPOST %s/api/v1/webhook -H 'Content-Type: application/json' \
    -d '{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"MedicAgentDown","agent":"demo-web","node":"demo"},"startsAt":"'$(date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ)'"}]}'

  # 2. Kill an agent (curl reports an empty reply: it died). The node's
  #    watchdog sees the child exit and restarts it through the runbook.
  curl -s %s/die

  # 3. Make it hang: /healthz stops answering and its heartbeat goes
  #    overdue after 5s; the watchdog restarts it.
  curl -s %s/hang

  # 4. Watch it come back: a new pid, and the run records with every step.
  curl -s %s/pid
  curl -s '%s/api/v1/runs?agent=demo-web&limit=5'

  # 5. Pause remediation and lift it again: while paused, runs end as
  #    "paused" and nothing acts; the status page shows the pause.
  %s pause --bridge.url=%s --reason="trying medic"
  %s resume --bridge.url=%s

Stop with Ctrl-C.
`, DemoNode, web, ports["WORKER"], cfgDir, base, base, base, base, web, web, web, base, exe, base, exe, base)
}
