// Package probe owns medic node's functional probes of an agent: one file
// per kind (http.go, tcp.go, exec.go), each a Prober, registered in the one
// map in probe.go. Package hcl takes each kind's attributes and its
// `medic plan` description from that map, and package exporter runs its
// prober, so adding a kind touches the HCL decoding of any new attribute
// and one new file here. Model: blackbox_exporter's prober package.
package probe
