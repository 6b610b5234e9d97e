package hcl

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// DiagnosticJSON is one diagnostic as `medic validate --format=json` prints
// it, for editors and CI.
type DiagnosticJSON struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Column    int    `json:"column"`
	EndLine   int    `json:"end_line"`
	EndColumn int    `json:"end_column"`
	Severity  string `json:"severity"`
	Summary   string `json:"summary"`
	Detail    string `json:"detail"`
}

func severity(d *hcl2.Diagnostic) string {
	if d.Severity == hcl2.DiagWarning {
		return "warning"
	}
	return "error"
}

// DiagnosticsJSON converts diagnostics to their JSON form; the list is never
// nil so that a clean run prints [].
func DiagnosticsJSON(diags hcl2.Diagnostics) []DiagnosticJSON {
	out := make([]DiagnosticJSON, 0, len(diags))
	for _, d := range diags {
		j := DiagnosticJSON{Severity: severity(d), Summary: d.Summary, Detail: d.Detail}
		if d.Subject != nil {
			j.File = d.Subject.Filename
			j.Line, j.Column = d.Subject.Start.Line, d.Subject.Start.Column
			j.EndLine, j.EndColumn = d.Subject.End.Line, d.Subject.End.Column
		}
		out = append(out, j)
	}
	return out
}

// DiagnosticLine is the first line of a diagnostic:
// `file:line:col: error|warning: summary`.
func DiagnosticLine(d *hcl2.Diagnostic) string {
	if d.Subject == nil {
		return fmt.Sprintf("medic: %s: %s", severity(d), d.Summary)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, severity(d), d.Summary)
}

// WriteDiagnostics writes each diagnostic as its DiagnosticLine, the detail
// indented below it, then the source lines of its subject with the range
// marked:
//
//	a.hcl:3:15: error: Unknown attribute
//	  usage has no attribute "mem". Did you mean "memory"?
//	    3 |     when = usage.mem > 0.5
//	      |                  ^~~
func WriteDiagnostics(w io.Writer, diags hcl2.Diagnostics, sources map[string][]byte) error {
	var buf bytes.Buffer
	for _, d := range diags {
		buf.WriteString(DiagnosticLine(d))
		buf.WriteByte('\n')
		if d.Detail != "" {
			for _, line := range strings.Split(d.Detail, "\n") {
				buf.WriteString("  ")
				buf.WriteString(line)
				buf.WriteByte('\n')
			}
		}
		if d.Subject != nil {
			writeSnippet(&buf, *d.Subject, sources[d.Subject.Filename])
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// maxSnippetLines bounds the snippet of a diagnostic that spans a whole
// block.
const maxSnippetLines = 3

func writeSnippet(buf *bytes.Buffer, r hcl2.Range, src []byte) {
	if len(src) == 0 || r.Start.Line < 1 || r.Start.Byte < 0 || r.Start.Byte > len(src) {
		return
	}
	end := r.End.Byte
	if end < r.Start.Byte || end > len(src) {
		end = r.Start.Byte
	}
	lineStart := bytes.LastIndexByte(src[:r.Start.Byte], '\n') + 1
	width := max(3, len(fmt.Sprint(r.Start.Line+maxSnippetLines)))
	line := r.Start.Line
	pos := lineStart
	for n := 0; n < maxSnippetLines && pos <= len(src); n++ {
		lineEnd := bytes.IndexByte(src[pos:], '\n')
		if lineEnd < 0 {
			lineEnd = len(src)
		} else {
			lineEnd += pos
		}
		// Mark the part of the range on this line.
		from, to := pos, lineEnd
		if n == 0 {
			from = r.Start.Byte
		}
		if end < to {
			to = end
		}
		if from > to {
			from = to
		}
		text, mark := snippetLine(src[pos:lineEnd], from-pos, to-pos)
		fmt.Fprintf(buf, "  %*d | %s\n", width, line, text)
		fmt.Fprintf(buf, "  %*s | %s\n", width, "", mark)
		// Go on only if the range covers part of the next line.
		if end <= lineEnd+1 {
			break
		}
		pos = lineEnd + 1
		line++
	}
}

// maxSnippetColumns bounds how much of one source line a snippet shows: a
// generated or minified file can hold a line of megabytes, and printing it
// (twice, with its marker) buries the diagnostic.
const maxSnippetColumns = 160

// snippetContext is how many characters before the marked range a cut line
// keeps.
const snippetContext = 40

// snippetLine returns the text of one source line and the marker line under
// it for the range [from, to) (byte offsets into line). A line longer than
// maxSnippetColumns is cut to a window around the range, with "…" where
// text was left out.
func snippetLine(line []byte, from, to int) (text, mark string) {
	line = bytes.TrimRight(line, "\r")
	from, to = min(from, len(line)), min(to, len(line))
	winFrom, winTo := 0, len(line)
	if utf8.RuneCount(line) > maxSnippetColumns {
		winFrom = from
		for k := 0; k < snippetContext && winFrom > 0; k++ {
			_, size := utf8.DecodeLastRune(line[:winFrom])
			winFrom -= size
		}
		winTo = winFrom
		for k := 0; k < maxSnippetColumns && winTo < len(line); k++ {
			_, size := utf8.DecodeRune(line[winTo:])
			winTo += size
		}
	}
	var t, m strings.Builder
	if winFrom > 0 {
		t.WriteString("…")
		m.WriteByte(' ')
	}
	t.Write(line[winFrom:winTo])
	if winTo < len(line) {
		t.WriteString("…")
	}
	for _, c := range string(line[winFrom:max(winFrom, from)]) {
		if c == '\t' {
			m.WriteByte('\t')
		} else {
			m.WriteByte(' ')
		}
	}
	m.WriteByte('^')
	markTo := min(max(to, from), winTo)
	if k := utf8.RuneCount(line[min(from, markTo):markTo]); k > 1 {
		m.WriteString(strings.Repeat("~", k-1))
	}
	return t.String(), m.String()
}
