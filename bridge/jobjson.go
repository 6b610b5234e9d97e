package bridge

import (
	"slices"
	"time"
	"unicode/utf8"

	"github.com/medicops/medic/hcl"
)

// appendJob appends job as JSON, byte for byte what json.Marshal(job)
// writes (TestAppendJobIsJSONMarshal), without reflection: the webhook
// encodes one job per alert.
func appendJob(b []byte, j *Job) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, j.ID)
	b = append(b, `,"runbook":`...)
	b = appendJSONString(b, j.Runbook)
	b = append(b, `,"agent":`...)
	b = appendJSONString(b, j.Agent)
	b = append(b, `,"node":`...)
	b = appendJSONString(b, j.Node)
	b = append(b, `,"alert":`...)
	b = appendAlert(b, &j.Alert)
	b = append(b, `,"enqueued":`...)
	b = appendJSONTime(b, j.Enqueued)
	b = append(b, `,"deadline":`...)
	b = appendJSONTime(b, j.Deadline)
	return append(b, '}')
}

func appendAlert(b []byte, a *hcl.Alert) []byte {
	b = append(b, `{"labels":`...)
	b = appendStringMap(b, a.Labels)
	if len(a.Annotations) > 0 {
		b = append(b, `,"annotations":`...)
		b = appendStringMap(b, a.Annotations)
	}
	b = append(b, `,"status":`...)
	b = appendJSONString(b, a.Status)
	b = append(b, `,"startsAt":`...)
	b = appendJSONTime(b, a.StartsAt)
	if a.Fingerprint != "" {
		b = append(b, `,"fingerprint":`...)
		b = appendJSONString(b, a.Fingerprint)
	}
	return append(b, '}')
}

// appendStringMap writes the keys sorted, as encoding/json does.
func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	var stack [16]string
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// appendJSONTime is time.Time's MarshalJSON for the years it accepts.
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does by default: <, > and &
// escaped for HTML, invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029
// escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
