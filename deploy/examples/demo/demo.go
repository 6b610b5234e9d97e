package demo

import "embed"

// FS holds the estate's *.hcl templates.
//
//go:embed *.hcl
var FS embed.FS
