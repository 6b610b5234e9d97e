package app

import (
	"bytes"
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
	"text/template"

	"github.com/medicops/medic/deploy/examples/demo"
	"github.com/medicops/medic/internal/redisx"
	"github.com/medicops/medic/runbooks/library"
)

// DemoNode is the node name of the demo estate.
const DemoNode = "demo"

// DemoPool is the demo estate's config-dispatch pool.
const DemoPool = "demo-switches"

// demoPorts names the loopback ports the estate's agents listen on; each
// fills @PORT_NAME@ in the estate. An agent added to the estate adds its
// name here.
var demoPorts = []string{"WEB", "WORKER", "CFG1", "CFG2", "BATCH"}

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
// bundled estate (two demo agents, a pool of two demo config agents, the
// library runbooks), written to a temporary directory that is removed on
// exit. The pool's device is built in, on the demo's own listener.
func RunDemo(ctx context.Context, o DemoOptions) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:9095"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
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
	repl := []string{"@MEDIC@", o.Executable, "@DIR@", dir, "@CONFIG@", cfgDir,
		"@NODE_URL@", "http://" + listen, "@BRIDGE_URL@", "http://" + listen}
	for _, name := range demoPorts {
		a, err := resolvePort("127.0.0.1:0")
		if err != nil {
			return err
		}
		_, ports[name], _ = net.SplitHostPort(a)
		repl = append(repl, "@PORT_"+name+"@", ports[name])
	}
	// The store is started here rather than by Run, because the config
	// agents are processes of their own and the estate must name its URL.
	_, redisURL, closeStore, err := redisx.Embedded()
	if err != nil {
		return err
	}
	defer closeStore()
	o.Logger.Warn("medic demo uses an embedded in-memory store; jobs, run records and pool state are NOT durable and are lost when medic exits", "redis", redisURL)
	repl = append(repl, "@REDIS_URL@", redisURL)
	if err := writeFS(cfgDir, demo.FS, strings.NewReplacer(repl...)); err != nil {
		return err
	}
	if err := writeFS(cfgDir, library.FS, nil); err != nil {
		return err
	}
	cfg, err := LoadConfig(cfgDir)
	if err != nil {
		return fmt.Errorf("demo estate: %w", err)
	}
	for _, a := range cfg.Agents {
		if a.Workdir == "" {
			continue
		}
		if err := os.MkdirAll(a.Workdir, 0o755); err != nil {
			return err
		}
	}
	device := newDemoDevice()
	err = Run(ctx, Options{
		ConfigFile: cfgDir, RedisURL: redisURL, Node: DemoNode, ListenAddresses: []string{listen}, Logger: o.Logger,
		Mount: device.register,
		OnListening: func(addrs []string) {
			printDemo(o.Out, demoText{Base: "http://" + addrs[0], Node: DemoNode, Pool: DemoPool, ConfigDir: cfgDir, Ports: ports, Exe: o.Executable})
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

type demoText struct {
	Base, Node, Pool, ConfigDir string
	Ports                       map[string]string
	Exe                         string // the medic binary, for medic pause/resume
}

// Now is the shell's current time, for startsAt in the printed alerts.
func (demoText) Now() string { return `'$(date -u +%Y-%m-%dT%H:%M:%SZ)'` }

var demoTemplate = template.Must(template.New("demo").Parse(`
medic demo is running: bridge + node {{printf "%q" .Node}} in one process, an embedded
in-memory store (nothing is kept after exit), two demo agents (demo-web on
127.0.0.1:{{.Ports.WEB}}, demo-worker on 127.0.0.1:{{.Ports.WORKER}}), pool {{printf "%q" .Pool}} with two
config agents (demo-cfg-1 on 127.0.0.1:{{.Ports.CFG1}}, demo-cfg-2 on 127.0.0.1:{{.Ports.CFG2}}) delivering to
a built-in demo device, demo-batch (127.0.0.1:{{.Ports.BATCH}}) with a shadow and an approve
runbook, and the library runbooks from {{.ConfigDir}}.

  status page   {{.Base}}/
  run records   {{.Base}}/api/v1/runs
  pool status   {{.Base}}/api/v1/pools/{{.Pool}}
  demo device   {{.Base}}/demo/devices/{device}
  metrics       {{.Base}}/metrics

Try, in another terminal:

  # 1. Fire an alert the way Alertmanager does. The bridge routes it to node
  #    "demo"; the engine finds demo-web alive and its probe passing: "healthy".
  curl -s -XPOST {{.Base}}/api/v1/webhook -H 'Content-Type: application/json' \
    -d '{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"MedicAgentDown","agent":"demo-web","node":"demo"},"startsAt":"{{.Now}}"}]}'

  # 2. Kill an agent (curl reports an empty reply: it died). The node's
  #    watchdog sees the child exit and restarts it through the runbook.
  curl -s http://127.0.0.1:{{.Ports.WEB}}/die

  # 3. Make it hang: /healthz stops answering and its heartbeat goes
  #    overdue after 5s; the watchdog restarts it.
  curl -s http://127.0.0.1:{{.Ports.WEB}}/hang

  # 4. Watch it come back: a new pid, and the run records with every step.
  curl -s http://127.0.0.1:{{.Ports.WEB}}/pid
  curl -s '{{.Base}}/api/v1/runs?agent=demo-web&limit=5'

Config dispatch and switchover:

  # 5. Publish configs for device sw-01; each gets the device's next seq.
  #    The first publish makes demo-cfg-1 the pool's active agent.
  for i in 1 2 3; do curl -s -XPOST {{.Base}}/api/v1/pools/{{.Pool}}/configs \
    -d '{"device":"sw-01","payload":{"vlan":'$i'}}'; done

  # 6. The pool: active agent, epoch, backlog, buffer, each agent's health.
  curl -s {{.Base}}/api/v1/pools/{{.Pool}}

  # 7. Kill the active agent, demo-cfg-1 (empty reply: it died; its
  #    watchdog is off, so it stays dead), and publish more at once. Its
  #    heartbeat stops, and within about a second the coordinator switches
  #    the pool to demo-cfg-2 (epoch 2), moving what demo-cfg-1 had not
  #    delivered, in order. (Pool says demo-cfg-2 is active? Use its /die,
  #    in step 11.)
  curl -s http://127.0.0.1:{{.Ports.CFG1}}/die
  for i in 4 5 6; do curl -s -XPOST {{.Base}}/api/v1/pools/{{.Pool}}/configs \
    -d '{"device":"sw-01","payload":{"vlan":'$i'}}'; done

  # 8. Watch the switchover: "agent":"demo-cfg-2", "epoch":2, one switchover
  #    more; the status page {{.Base}}/ shows the pool too.
  curl -s {{.Base}}/api/v1/pools/{{.Pool}}

  # 9. What the device applied: seq 1 to 6 in order, each with the agent and
  #    epoch that delivered it. Nothing lost, nothing reordered.
  curl -s {{.Base}}/demo/devices/sw-01

  # 10. Bring demo-cfg-1 back through the agent-recovery runbook: the alert
  #     finds it dead and restarts it, and it joins the pool as a standby.
  curl -s -XPOST {{.Base}}/api/v1/webhook -H 'Content-Type: application/json' \
    -d '{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"MedicAgentDown","agent":"demo-cfg-1","node":"demo"},"startsAt":"{{.Now}}"}]}'

  # 11. Switch back, by hand (both agents must be healthy) or by killing
  #     demo-cfg-2; then publish more and read the device again (epoch 3).
  curl -s -XPOST {{.Base}}/api/v1/pools/{{.Pool}}/switchover
  curl -s http://127.0.0.1:{{.Ports.CFG2}}/die

Shadow and approve (demo-batch on 127.0.0.1:{{.Ports.BATCH}}: no watchdog, so only these act on it):

  # 12. Hang demo-batch: its probe fails from now on.
  curl -s -m 1 http://127.0.0.1:{{.Ports.BATCH}}/hang

  # 13. Shadow mode (runbook demo-shadow): it samples, diagnoses and records
  #     the restart it would run, and runs nothing. Outcome "shadowed", and
  #     demo-batch keeps its pid.
  curl -s -XPOST {{.Base}}/api/v1/webhook -H 'Content-Type: application/json' \
    -d '{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"DemoBatchShadow","agent":"demo-batch","node":"demo"},"startsAt":"{{.Now}}"}]}'
  curl -s '{{.Base}}/api/v1/runs?agent=demo-batch&outcome=shadowed&limit=1'

  # 14. Approve mode (runbook demo-approve): it diagnoses, then waits for a
  #     person. The run shows as "pending_approval" here and on the status
  #     page, with Approve and Reject buttons.
  curl -s -XPOST {{.Base}}/api/v1/webhook -H 'Content-Type: application/json' \
    -d '{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"DemoBatchApprove","agent":"demo-batch","node":"demo"},"startsAt":"{{.Now}}"}]}'
  curl -s '{{.Base}}/api/v1/runs?agent=demo-batch&outcome=pending_approval&limit=1'

  # 15. Approve it (RUN_ID from step 14): the agent is checked again,
  #     restarted and verified, "recovered", a new pid. /reject instead ends
  #     it "rejected"; no decision within approval_ttl (10m) ends it "expired".
  curl -s -XPOST {{.Base}}/api/v1/runs/RUN_ID/approve -d '{"by":"you"}'
  curl -s http://127.0.0.1:{{.Ports.BATCH}}/pid

Pause:

  # 16. Pause remediation and lift it again: while paused, runs end as
  #     "paused" and nothing acts; the status page shows the pause, and
  #     /metrics medic_paused.
  {{.Exe}} pause --bridge.url={{.Base}} --reason="trying medic"
  {{.Exe}} resume --bridge.url={{.Base}}

Stop with Ctrl-C.
`))

func printDemo(w io.Writer, t demoText) {
	// One write: log lines of the components starting meanwhile must not
	// land in the middle of the instructions.
	var b bytes.Buffer
	if err := demoTemplate.Execute(&b, t); err != nil {
		fmt.Fprintln(w, "medic demo: print instructions:", err)
		return
	}
	w.Write(b.Bytes())
}
