package execx

import (
	"strings"
	"unicode/utf8"
)

// EnvValue makes s safe for an environment: exec refuses a NUL byte in a
// variable, and a value that is not UTF-8 is mangled or refused by many
// programs. Each NUL byte and each byte of an invalid UTF-8 sequence is
// replaced by its escape \xNN (two lower-case hex digits); everything else,
// newlines included, is kept as it is. A valid value is returned
// unchanged, so the rule costs nothing for ordinary labels. The escaping is
// not reversible (a value may contain the text \x00 itself): it keeps the
// variable, and so the step that reads it, working.
func EnvValue(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == 0 || (r == utf8.RuneError && n == 1) {
			c := s[i]
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			i++
			continue
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	return b.String()
}
