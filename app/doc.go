// Package app assembles medic's long-running commands from the library
// packages: `medic bridge` (webhook, run records, pool API and
// coordinator), `medic serve` (the bridge plus a node: supervisor, engine
// and job consumer, in one process) and `medic demo` (serve on a bundled
// estate). cmd/medic only parses flags and calls Run or RunDemo, so tests
// start and stop the whole thing in-process on 127.0.0.1:0.
//
// app is the composition root: the one package that imports every other
// (bridge, exporter, queue, runbooks, controls, hcl), and that nothing but
// cmd/medic and tests imports. Run is in three phases: build wires the
// components, start serves and runs them, stop undoes start in reverse.
package app
