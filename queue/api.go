package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// MaxBody bounds every request body of the pool API.
const MaxBody = 1 << 20

// APIOptions configure NewAPI.
type APIOptions struct {
	Publisher   *Publisher
	Coordinator *Coordinator
	Logger      *slog.Logger
	// SwitchoverTimeout bounds how long POST .../switchover waits for the
	// switchover to complete (default 30s).
	SwitchoverTimeout time.Duration
	// Who names the operator of a device retry or skip: the authenticated
	// user, else by (the request's "by"); nil: by, else "anonymous".
	Who func(r *http.Request, by string) string
	// CheckDevice, when set, refuses (400) a device ID that the pool's
	// device_url cannot address (hcl.Pool.CheckDevice).
	CheckDevice func(pool, device string) error
}

// NewAPI returns the bridge's pool endpoints (docs/design.md §5); mount it at
// /api/v1/pools/:
//
//	POST /api/v1/pools/{pool}/configs     {"device","payload","idempotency_key"} → {"id","seq"}
//	GET  /api/v1/pools/{pool}             status
//	POST /api/v1/pools/{pool}/switchover  {"target"} (optional) → result
//
// Only the coordinator's pools are served; others are 404.
func NewAPI(o APIOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SwitchoverTimeout <= 0 {
		o.SwitchoverTimeout = 30 * time.Second
	}
	a := &api{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/pools/{pool}/configs", a.publish)
	mux.HandleFunc("GET /api/v1/pools/{pool}", a.status)
	mux.HandleFunc("POST /api/v1/pools/{pool}/switchover", a.switchover)
	a.registerDevices(mux)
	return mux
}

type api struct{ o APIOptions }

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// decode reads a bounded JSON body into v; it answers the request itself
// and returns false when the body is too large or malformed. strict also
// rejects fields v does not have: a misspelt field of a switchover
// ({"agent":"a2"}) must not turn into a switchover to any agent.
func decode(w http.ResponseWriter, r *http.Request, v any, optional, strict bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body over 1 MiB")
			return false
		}
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return false
	}
	if optional && len(body) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return false
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		writeError(w, http.StatusBadRequest, "malformed JSON: data after the object")
		return false
	}
	return true
}

// strictJSON decodes one JSON object into v, refusing unknown fields and
// trailing data.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("malformed JSON: " + err.Error())
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

func (a *api) known(w http.ResponseWriter, pool string) bool {
	if a.o.Coordinator != nil {
		if _, ok := a.o.Coordinator.Keys(pool); !ok {
			writeError(w, http.StatusNotFound, "unknown pool "+pool)
			return false
		}
	}
	return true
}

// coordinated reads the request's pool: 404 for a pool nobody
// coordinates, 501 without a coordinator.
func (a *api) coordinated(w http.ResponseWriter, r *http.Request) (string, bool) {
	pool := r.PathValue("pool")
	if !a.known(w, pool) {
		return pool, false
	}
	if a.o.Coordinator == nil {
		writeError(w, http.StatusNotImplemented, "no coordinator")
		return pool, false
	}
	return pool, true
}

type publishRequest struct {
	Device         string          `json:"device"`
	Payload        json.RawMessage `json:"payload"`
	IdempotencyKey string          `json:"idempotency_key"`
}

func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	pool := r.PathValue("pool")
	if !a.known(w, pool) {
		return
	}
	if a.o.Publisher == nil {
		writeError(w, http.StatusNotImplemented, "publishing is not enabled")
		return
	}
	var req publishRequest
	if !decode(w, r, &req, false, false) {
		return
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = r.Header.Get("Idempotency-Key")
	}
	if req.Device == "" || len(req.Payload) == 0 {
		writeError(w, http.StatusBadRequest, `"device" and "payload" are required`)
		return
	}
	if a.o.CheckDevice != nil {
		if err := a.o.CheckDevice(pool, req.Device); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	res, err := a.o.Publisher.Publish(r.Context(), pool, req.Device, req.Payload, req.IdempotencyKey)
	switch {
	case errors.Is(err, ErrBadInput):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		a.o.Logger.Error("publish", "pool", pool, "err", err)
		writeError(w, http.StatusServiceUnavailable, "publish failed: "+err.Error())
	case res.Duplicate:
		writeJSON(w, http.StatusOK, res)
	default:
		writeJSON(w, http.StatusCreated, res)
	}
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	pool, ok := a.coordinated(w, r)
	if !ok {
		return
	}
	st, err := a.o.Coordinator.Status(r.Context(), pool)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

type switchoverRequest struct {
	Target string `json:"target"`
}

func (a *api) switchover(w http.ResponseWriter, r *http.Request) {
	pool, ok := a.coordinated(w, r)
	if !ok {
		return
	}
	var req switchoverRequest
	if !decode(w, r, &req, true, true) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.SwitchoverTimeout)
	defer cancel()
	res, err := a.o.Coordinator.Trigger(ctx, pool, "", req.Target, "api")
	switch {
	case errors.Is(err, ErrNoTarget), errors.Is(err, ErrBadTarget):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, http.StatusOK, res)
	}
}
