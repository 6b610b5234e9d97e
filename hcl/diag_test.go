package hcl

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestWriteDiagnosticsLongLine: a diagnostic on a very long source line
// (generated or minified HCL, or a file that is not HCL at all) shows a
// window of the line around the range, not the whole line twice.
func TestWriteDiagnosticsLongLine(t *testing.T) {
	conds := strings.Repeat("usage.memory > 0.5 && ", 2000)
	tests := []struct {
		name     string
		src      string
		wantText string // the marked range must sit under this text
		wantMark string
	}{
		{
			name:     "garbage file of one huge line",
			src:      strings.Repeat("a", 1<<20),
			wantText: "aaaa",
			wantMark: "^~~~",
		},
		{
			name:     "error in the middle of a long expression",
			src:      "runbook \"r\" {\n  match {\n    alertname = \"A\"\n  }\n  cause \"m\" {\n    when = " + conds + "usage.mem > 0.5 && " + conds + "true\n  }\n}\n",
			wantText: "mem > 0.5",
			wantMark: "^~~",
		},
		{
			name:     "multi-byte text before the range",
			src:      "runbook \"r\" {\n  match {\n    alertname = \"A\"\n  }\n  cause \"m\" {\n    when = " + strings.Repeat(`lookup(alert.labels, "ééé", "") == "é" && `, 100) + "usage.mem > 0.5\n  }\n}\n",
			wantText: "mem > 0.5",
			wantMark: "^~~",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := LoadSources([]Source{{Name: "l.hcl", Bytes: []byte(tc.src)}})
			if !diags.HasErrors() {
				t.Fatal("no diagnostics")
			}
			var buf bytes.Buffer
			if err := WriteDiagnostics(&buf, diags[:1], map[string][]byte{"l.hcl": []byte(tc.src)}); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if len(out) > 2000 {
				t.Fatalf("diagnostic is %d bytes long; want a bounded snippet:\n%.600s…", len(out), out)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			text, mark := lines[len(lines)-2], lines[len(lines)-1]
			_, text, _ = strings.Cut(text, " | ")
			_, mark, _ = strings.Cut(mark, " | ")
			col := utf8.RuneCountInString(mark[:strings.IndexByte(mark, '^')])
			if at := []rune(text)[col:]; !strings.HasPrefix(string(at), tc.wantText) || !strings.HasPrefix(mark[strings.IndexByte(mark, '^'):], tc.wantMark) {
				t.Errorf("marker does not point at %q:\n%s\n%s", tc.wantText, text, mark)
			}
			if n := utf8.RuneCountInString(text); n > maxSnippetColumns+2 {
				t.Errorf("snippet line is %d characters; want at most %d", n, maxSnippetColumns+2)
			}
		})
	}
}
