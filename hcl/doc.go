// Package hcl owns medic's runbook language: the schema of the agent,
// runbook and pool blocks, decoding with diagnostics that name file, line and
// column, late evaluation of conditions against alert, agent and usage, and
// canonical formatting.
//
// Every other package consumes the decoded *Config; none of them parses HCL.
package hcl
