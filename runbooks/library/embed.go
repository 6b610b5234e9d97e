package library

import "embed"

// FS holds every *.hcl file of the library.
//
//go:embed *.hcl
var FS embed.FS
