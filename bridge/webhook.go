package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/medicops/medic/hcl"
)

// inputError is a 400: the notification is malformed, and retrying it
// cannot help.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &inputError{fmt.Sprintf(format, args...)}
}

// DecodeWebhook parses an Alertmanager webhook payload (version 4). It
// ignores fields it does not know (Alertmanager adds some in minor
// releases) and insists on those the bridge needs: the alerts array and,
// for each alert, status, labels and startsAt. A missing fingerprint is
// computed from the labels the way Alertmanager does.
func DecodeWebhook(r io.Reader) ([]hcl.Alert, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, readError(err)
	}
	return decodeWebhook(data)
}

// readError keeps a body-limit error as it is (a 413) and makes any other
// read error a 400.
func readError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return badInput("body: %v", err)
}

// decodeWebhook decodes with encoding/json: a hand-written decoder saved
// ~5 µs a webhook, under a tenth of the bridge's CPU per webhook, too
// little to keep (BENCHMARKS.md, "Hand-written code against the library").
func decodeWebhook(data []byte) ([]hcl.Alert, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badInput("body: empty, want an Alertmanager webhook payload")
	}
	var msg struct {
		Alerts *[]wireAlert `json:"alerts"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return nil, explain(data, err)
	}
	if msg.Alerts == nil {
		return nil, badInput("alerts: missing")
	}
	wire := *msg.Alerts
	out := make([]hcl.Alert, 0, len(wire))
	for i, w := range wire {
		a, err := w.alert()
		if err != nil {
			return nil, badInput("alerts[%d]%s", i, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// explain turns a decoding error into one that names the alert and field,
// by decoding again one alert at a time (only malformed input pays this).
func explain(data []byte, err error) error {
	var msg struct {
		Alerts []json.RawMessage `json:"alerts"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return badInput("body: %v", err)
	}
	for i, raw := range msg.Alerts {
		var w wireAlert
		if err := json.Unmarshal(raw, &w); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				return badInput("alerts[%d].%s: %s is not %s", i, te.Field, te.Value, te.Type)
			}
			return badInput("alerts[%d]: %v", i, err)
		}
	}
	return badInput("body: %v", err)
}

// wireAlert is one alert as Alertmanager sends it; pointers tell a missing
// field from an empty one.
type wireAlert struct {
	Status      *string           `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    *string           `json:"startsAt"`
	Fingerprint string            `json:"fingerprint"`
}

func (in wireAlert) alert() (hcl.Alert, error) {
	a := hcl.Alert{Labels: in.Labels, Annotations: in.Annotations}
	switch {
	case in.Status == nil:
		return a, errors.New(".status: missing")
	case *in.Status != "firing" && *in.Status != "resolved":
		return a, fmt.Errorf(".status: %q, want \"firing\" or \"resolved\"", *in.Status)
	case len(in.Labels) == 0:
		return a, errors.New(".labels: missing")
	case in.StartsAt == nil || *in.StartsAt == "":
		return a, errors.New(".startsAt: missing")
	}
	a.Status = *in.Status
	t, err := time.Parse(time.RFC3339Nano, *in.StartsAt)
	if err != nil {
		return a, fmt.Errorf(".startsAt: %q is not an RFC 3339 time", *in.StartsAt)
	}
	if t.IsZero() {
		return a, errors.New(".startsAt: zero time")
	}
	a.StartsAt = t
	for name := range in.Labels {
		if name == "" || len(name) > 1024 {
			return a, errors.New(".labels: empty or overlong label name")
		}
	}
	switch fp := in.Fingerprint; {
	case fp == "":
		a.Fingerprint = toLabelSet(in.Labels).Fingerprint().String()
	case !isHex(fp) || len(fp) > 64:
		return a, fmt.Errorf(".fingerprint: %q is not a hex fingerprint", fp)
	default:
		a.Fingerprint = fp
	}
	return a, nil
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := make(model.LabelSet, len(m))
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// bodyPool recycles webhook body buffers: the decoded alerts copy what
// they keep, so a buffer is free again once the body is decoded.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// maxPooledBody keeps the rare huge body's buffer out of the pool.
const maxPooledBody = 64 << 10

// readBody reads r to its end into buf, growing it to size first when the
// size is known.
func readBody(buf []byte, r io.Reader, size int64) ([]byte, error) {
	if size > 0 && int64(cap(buf)) < size+1 {
		buf = make([]byte, 0, size+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// jsonContentType is set as the header's value directly: Header.Set
// would canonicalise the key and allocate the slice on every answer.
var jsonContentType = []string{"application/json"}

// handleWebhook is POST /api/v1/webhook. It does its own authentication
// and status counting instead of wrapping handlers, and its Redis work is
// bounded by RequestTimeout in the enqueuer rather than by a context (and
// a timer) per request: it is the one hot path.
func (b *Bridge) handleWebhook(w http.ResponseWriter, r *http.Request) {
	code := b.serveWebhook(w, r)
	b.metrics.webhookRequest(code)
}

// webhookCOP refuses what a browser marks cross-origin (Sec-Fetch-Site,
// Origin): a few header reads, and the webhook (and the login form) are
// as closed to cross-site pages as every other write. Alertmanager sends
// neither header. It has Go's default deny answer, a plain 403.
var webhookCOP = http.NewCrossOriginProtection()

func (b *Bridge) serveWebhook(w http.ResponseWriter, r *http.Request) int {
	if err := webhookCOP.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "forbidden: cross-origin request")
		return http.StatusForbidden
	}
	if !b.authorized(r) {
		unauthenticated(w)
		return http.StatusUnauthorized
	}
	if r.ContentLength > b.opts.MaxBody {
		// What MaxBytesReader would say after reading the limit.
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: over the limit of %d bytes", b.opts.MaxBody))
		return http.StatusRequestEntityTooLarge
	}
	bufp := bodyPool.Get().(*[]byte)
	data, err := readBody((*bufp)[:0], http.MaxBytesReader(w, r.Body, b.opts.MaxBody), r.ContentLength)
	var alerts []hcl.Alert
	if err != nil {
		err = readError(err)
	} else {
		alerts, err = decodeWebhook(data)
	}
	if cap(data) <= maxPooledBody {
		*bufp = data[:0]
		bodyPool.Put(bufp)
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: over the limit of %d bytes", mbe.Limit))
		return http.StatusRequestEntityTooLarge
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return http.StatusBadRequest
	}
	counts, err := b.Ingest(r.Context(), alerts)
	if err != nil {
		b.log.Warn("webhook not accepted; Alertmanager will retry", "err", err, "alerts", len(alerts))
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return http.StatusServiceUnavailable
	}
	// The one answer on the hot path, written without reflection.
	var arr [80]byte
	body := append(arr[:0], `{"accepted":`...)
	body = strconv.AppendInt(body, int64(counts.Accepted), 10)
	body = append(body, `,"duplicates":`...)
	body = strconv.AppendInt(body, int64(counts.Duplicates), 10)
	body = append(body, `,"ignored":`...)
	body = strconv.AppendInt(body, int64(counts.Ignored), 10)
	body = append(body, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusAccepted)
	w.Write(body)
	return http.StatusAccepted
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
