// Package medic holds no code: it documents how medic's packages are
// layered, and layers_test.go keeps that true. The packages themselves are
// listed, bottom up, in the README's architecture section:
//
//	helpers        internal/… (execx, procsig, redisx, redistest, testport),
//	               heartbeat, queue/devicetest, runbooks/library, deploy/examples/demo
//	domain         hcl (the runbook language), controls (shared safety state),
//	               queue (ordered config dispatch)
//	engine         runbooks
//	node           exporter
//	bridge         bridge
//	simulation     simulate
//	composition    app
//	commands       cmd/medic, and the e2e tests and test programs
//
// A package imports its own layer or the layers below, never one above:
// the engine does not know the bridge exists, and only app (and the
// commands above it) imports everything.
package medic
