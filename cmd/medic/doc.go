// Command medic is the Prometheus-driven alert remediation bridge. main only
// parses flags and signals; every subcommand calls into a package.
package main
