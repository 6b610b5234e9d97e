package hcl

import (
	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns the canonical formatting of one file. Input that does not
// parse is refused rather than rewritten, so `medic fmt` never mangles a
// file it does not understand.
func Format(src Source) ([]byte, hcl2.Diagnostics) {
	_, diags := hclsyntax.ParseConfig(src.Bytes, src.Name, hcl2.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src.Bytes), diags
}
