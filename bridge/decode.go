package bridge

import (
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// parserPool holds fastjson parsers; a parser's values live in its own
// buffer, so everything kept is copied out before it goes back.
var parserPool fastjson.ParserPool

// decodeFast is decodeWebhook's fast path for the payloads Alertmanager
// sends. It returns ok only when its answer is exactly what encoding/json
// would decode: for anything unusual — JSON that encoding/json refuses, a
// field of an unexpected type or null, a key that differs from a known one
// only in case (encoding/json matches keys case-insensitively), a
// duplicated known key, or a kept string with an escape fastjson resolves
// differently (a backslash, U+FFFD or invalid UTF-8 after unescaping) — it
// says !ok and the caller decodes with encoding/json, which also words the
// errors. TestDecodeFastAgreesWithEncodingJSON holds it to that.
func decodeFast(data []byte) ([]wireAlert, bool) {
	if !validJSON(data) {
		return nil, false
	}
	p := parserPool.Get()
	defer parserPool.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, false
	}
	top, err := v.Object()
	if err != nil {
		return nil, false
	}
	var alerts *fastjson.Value
	ok := true
	top.Visit(func(k []byte, v *fastjson.Value) {
		switch {
		case !isASCII(k):
			ok = false // leave Unicode case folding to encoding/json
		case string(k) == "alerts":
			if alerts != nil {
				ok = false
			}
			alerts = v
		case strings.EqualFold(string(k), "alerts"):
			ok = false
		}
	})
	if !ok || alerts == nil || alerts.Type() != fastjson.TypeArray {
		return nil, false
	}
	arr, _ := alerts.Array()
	out := make([]wireAlert, len(arr))
	for i, av := range arr {
		if !decodeAlertFast(av, &out[i]) {
			return nil, false
		}
	}
	return out, true
}

// validJSON accepts only what json.Valid accepts, at a third of its cost:
// fastjson's validator is as strict except that it lets raw control
// characters through inside strings, so any control character but the
// trailing newline Alertmanager's encoder writes (and other trailing
// whitespace) is left to the slow path.
func validJSON(data []byte) bool {
	end := len(data)
	for end > 0 && (data[end-1] == '\n' || data[end-1] == '\r' || data[end-1] == '\t' || data[end-1] == ' ') {
		end--
	}
	for _, c := range data[:end] {
		if c < 0x20 {
			return false
		}
	}
	return fastjson.ValidateBytes(data) == nil
}

// wireFields are wireAlert's JSON names.
var wireFields = [...]string{"status", "labels", "annotations", "startsAt", "fingerprint"}

func decodeAlertFast(v *fastjson.Value, w *wireAlert) bool {
	o, err := v.Object()
	if err != nil {
		return false
	}
	var seen [len(wireFields)]bool
	ok := true
	o.Visit(func(k []byte, v *fastjson.Value) {
		if !ok {
			return
		}
		if !isASCII(k) {
			ok = false // leave Unicode case folding to encoding/json
			return
		}
		f := -1
		for i, name := range wireFields {
			if string(k) == name {
				f = i
				break
			}
			if strings.EqualFold(string(k), name) {
				ok = false
				return
			}
		}
		if f < 0 {
			return // an unknown field, of any type
		}
		if seen[f] {
			ok = false
			return
		}
		seen[f] = true
		switch f {
		case 1, 2:
			m, good := stringMapFast(v)
			if !good {
				ok = false
				return
			}
			if f == 1 {
				w.Labels = m
			} else {
				w.Annotations = m
			}
		default:
			s, good := stringFast(v)
			if !good {
				ok = false
				return
			}
			switch f {
			case 0:
				w.Status = &s
			case 3:
				w.StartsAt = &s
			case 4:
				w.Fingerprint = s
			}
		}
	})
	return ok
}

func stringMapFast(v *fastjson.Value) (map[string]string, bool) {
	o, err := v.Object()
	if err != nil {
		return nil, false
	}
	m := make(map[string]string, o.Len())
	ok := true
	o.Visit(func(k []byte, v *fastjson.Value) {
		if !ok {
			return
		}
		name, good := cleanString(k)
		if !good {
			ok = false
			return
		}
		if _, dup := m[name]; dup {
			ok = false // encoding/json: the last wins; rare enough to leave to it
			return
		}
		val, good := stringFast(v)
		if !good {
			ok = false
			return
		}
		m[name] = val
	})
	return m, ok
}

func stringFast(v *fastjson.Value) (string, bool) {
	if v.Type() != fastjson.TypeString {
		return "", false
	}
	b, _ := v.StringBytes()
	return cleanString(b)
}

// cleanString copies b out of the parser's buffer if encoding/json would
// have decoded the same string.
func cleanString(b []byte) (string, bool) {
	for i := 0; i < len(b); i++ {
		if c := b[i]; c == '\\' || c >= utf8.RuneSelf {
			if c == '\\' || !utf8.Valid(b[i:]) || strings.Contains(string(b[i:]), "\uFFFD") {
				return "", false
			}
			break
		}
	}
	return string(b), true
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
