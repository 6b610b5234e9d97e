package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/medicops/medic/alert"
)

// readError keeps a body-limit error as it is (a 413) and makes any other
// read error a 400.
func readError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return &alert.InputError{Msg: "body: " + err.Error()}
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
	var alerts []alert.Alert
	if err != nil {
		err = readError(err)
	} else {
		alerts, err = alert.Decode(data)
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
