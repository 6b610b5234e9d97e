// Package demo embeds the example estate `medic demo` runs (estate.hcl),
// so that the demo works from the binary alone.
package demo

import "embed"

// FS holds the estate's *.hcl templates.
//
//go:embed *.hcl
var FS embed.FS
