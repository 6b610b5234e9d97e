// Package exporter is the node side of medic: it knows the agents of one
// node by process identity (PID plus start time, so a reused PID never
// counts as alive), supervises `command` agents as children in their own
// process groups, probes them, samples their usage, keeps their heartbeats
// (HTTP and systemd's sd_notify), exports all of it to Prometheus, and
// starts the remediation engine itself when a supervised child exits or a
// heartbeat goes overdue (the watchdog).
//
// Node implements runbooks.Agents for the engine.
package exporter
