package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
	var msg struct {
		Alerts []json.RawMessage `json:"alerts"`
	}
	dec := json.NewDecoder(r)
	if err := dec.Decode(&msg); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		if errors.Is(err, io.EOF) {
			return nil, badInput("body: empty, want an Alertmanager webhook payload")
		}
		return nil, badInput("body: %v", err)
	}
	if msg.Alerts == nil {
		return nil, badInput("alerts: missing")
	}
	out := make([]hcl.Alert, 0, len(msg.Alerts))
	for i, raw := range msg.Alerts {
		a, err := decodeAlert(raw)
		if err != nil {
			return nil, badInput("alerts[%d]%s", i, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func decodeAlert(raw json.RawMessage) (hcl.Alert, error) {
	var in struct {
		Status      *string           `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    *string           `json:"startsAt"`
		Fingerprint string            `json:"fingerprint"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return hcl.Alert{}, fmt.Errorf(".%s: %s is not %s", te.Field, te.Value, te.Type)
		}
		return hcl.Alert{}, fmt.Errorf(": %v", err)
	}
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
		a.Fingerprint = model.LabelSet(toLabelSet(in.Labels)).Fingerprint().String()
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

// handleWebhook is POST /api/v1/webhook.
func (b *Bridge) handleWebhook(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, b.opts.MaxBody)
	alerts, err := DecodeWebhook(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: over the limit of %d bytes", mbe.Limit))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), b.opts.RequestTimeout)
	defer cancel()
	counts, err := b.Ingest(ctx, alerts)
	if err != nil {
		b.log.Warn("webhook not accepted; Alertmanager will retry", "err", err, "alerts", len(alerts))
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, counts)
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
