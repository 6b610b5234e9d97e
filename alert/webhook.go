package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// InputError says a payload is malformed: retrying it cannot help (the
// bridge answers 400).
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func badInput(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// Decode parses an Alertmanager webhook payload (version 4). It ignores
// fields it does not know (Alertmanager adds some in minor releases) and
// insists on those medic needs: the alerts array and, for each alert,
// status, labels and startsAt. Each alert keeps its own status: a group may
// mix firing and resolved alerts. A missing fingerprint is computed from
// the labels the way Alertmanager does. Every error is an *InputError.
//
// It decodes with encoding/json: a hand-written decoder saved
// ~5 µs a webhook, under a tenth of the bridge's CPU per webhook, too
// little to keep (BENCHMARKS.md, "Hand-written code against the library").
func Decode(data []byte) ([]Alert, error) {
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
	out := make([]Alert, 0, len(wire))
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
		return badInput("body: %s", describe(data, err))
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
	return badInput("body: %s", describe(data, err))
}

// describe says where a payload is not JSON (line and column), which
// people editing an alert file for `medic plan` need.
func describe(data []byte, err error) string {
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		return err.Error()
	}
	line, col := 1, 1
	for _, c := range data[:min(int(syn.Offset), len(data))] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d: %s", line, col, syn.Error())
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

func (in wireAlert) alert() (Alert, error) {
	a := Alert{Labels: in.Labels, Annotations: in.Annotations}
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
		a.Fingerprint = Fingerprint(in.Labels)
	case !isHex(fp) || len(fp) > 64:
		return a, fmt.Errorf(".fingerprint: %q is not a hex fingerprint", fp)
	default:
		a.Fingerprint = fp
	}
	return a, nil
}

// Fingerprint is Alertmanager's fingerprint of a label set, the one an
// alert without its own is given.
func Fingerprint(labels map[string]string) string {
	return toLabelSet(labels).Fingerprint().String()
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
