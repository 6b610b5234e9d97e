// Package demo embeds the example estate `medic demo` runs (estate.hcl),
// so that the demo works from the binary alone.
package demo
