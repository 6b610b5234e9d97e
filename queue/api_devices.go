package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// The device endpoints of the pool API (docs/design.md §5):
//
//	GET  /api/v1/pools/{pool}/devices/{device}         state
//	GET  /api/v1/pools/{pool}/devices?state=blocked|retrying&offset=&limit=
//	POST /api/v1/pools/{pool}/devices/{device}/retry   {"by","reason"}
//	POST /api/v1/pools/{pool}/devices/{device}/skip    {"by","reason"}
//	GET  /api/v1/pools/{pool}/dead-letters?after=&limit=
//
// The POSTs take a JSON body whatever its Content-Type (curl -d sends
// a form's), or the status page's form (by, reason).
func (a *api) registerDevices(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/pools/{pool}/devices/{device}", a.device)
	mux.HandleFunc("GET /api/v1/pools/{pool}/devices", a.devices)
	mux.HandleFunc("POST /api/v1/pools/{pool}/devices/{device}/retry", a.deviceAction("retry"))
	mux.HandleFunc("POST /api/v1/pools/{pool}/devices/{device}/skip", a.deviceAction("skip"))
	mux.HandleFunc("GET /api/v1/pools/{pool}/dead-letters", a.deadLetters)
}

// Page sizes of the device and dead-letter lists.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// maxDeviceLen bounds a device ID in a path.
const maxDeviceLen = 256

func (a *api) poolKeys(w http.ResponseWriter, r *http.Request) (Keys, bool) {
	pool, ok := a.coordinated(w, r)
	if !ok {
		return Keys{}, false
	}
	k, _ := a.o.Coordinator.Keys(pool)
	return k, true
}

func validDevice(d string) error {
	if d == "" || len(d) > maxDeviceLen {
		return fmt.Errorf("device: 1 to %d bytes", maxDeviceLen)
	}
	for _, r := range d {
		if unicode.IsControl(r) {
			return errors.New("device: no control characters")
		}
	}
	return nil
}

func (a *api) device(w http.ResponseWriter, r *http.Request) {
	k, ok := a.poolKeys(w, r)
	if !ok {
		return
	}
	dev := r.PathValue("device")
	if err := validDevice(dev); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := ReadDevice(r.Context(), a.o.Coordinator.o.Client, k, dev)
	switch {
	case errors.Is(err, ErrUnknownDevice):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// pageParams reads limit (1..MaxPageLimit, default DefaultPageLimit) and
// refuses parameters other than allowed: a misspelt filter must not
// answer with an unfiltered list.
func pageParams(w http.ResponseWriter, q url.Values, allowed ...string) (int64, bool) {
	for name := range q {
		known := name == "limit"
		for _, a := range allowed {
			known = known || name == a
		}
		if !known {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q: want %s, limit", name, strings.Join(allowed, ", ")))
			return 0, false
		}
	}
	limit := int64(DefaultPageLimit)
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > MaxPageLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: want an integer from 1 to %d", MaxPageLimit))
			return 0, false
		}
		limit = n
	}
	return limit, true
}

func (a *api) devices(w http.ResponseWriter, r *http.Request) {
	k, ok := a.poolKeys(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit, ok := pageParams(w, q, "state", "offset")
	if !ok {
		return
	}
	var offset int64
	if s := q.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "offset: want a whole number")
			return
		}
		offset = n
	}
	state := q.Get("state")
	if state != StateBlocked && state != StateRetrying {
		writeError(w, http.StatusBadRequest, "state: want blocked or retrying")
		return
	}
	page, err := ListDevices(r.Context(), a.o.Coordinator.o.Client, k, state, offset, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (a *api) deadLetters(w http.ResponseWriter, r *http.Request) {
	k, ok := a.poolKeys(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit, ok := pageParams(w, q, "after")
	if !ok {
		return
	}
	page, err := ListDeadLetters(r.Context(), a.o.Coordinator.o.Client, k, q.Get("after"), limit)
	switch {
	case errors.Is(err, ErrBadInput):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, http.StatusOK, page)
	}
}

// ActionRequest is the body of POST …/retry and …/skip.
type ActionRequest struct {
	// By names who acts when the request is not authenticated as a user.
	By string `json:"by"`
	// Reason is required: the audit record says why.
	Reason string `json:"reason"`
}

// isFormPost says whether r came from an HTML form (the status page).
func isFormPost(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
}

// readAction reads an action's body: JSON whatever the Content-Type, or
// a form's fields (parsed already by the bridge's Write, or here). form
// reports a form, answered with a redirect to the status page.
func readAction(w http.ResponseWriter, r *http.Request) (req ActionRequest, form bool, err error) {
	if isFormPost(r) && r.PostForm != nil {
		return ActionRequest{By: r.PostForm.Get("by"), Reason: r.PostForm.Get("reason")}, true, nil
	}
	body, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if rerr != nil {
		return req, false, fmt.Errorf("body: %v", rerr)
	}
	trimmed := bytes.TrimSpace(body)
	if isFormPost(r) && (len(trimmed) == 0 || trimmed[0] != '{') {
		v, perr := url.ParseQuery(string(body))
		if perr != nil {
			return req, true, fmt.Errorf("form: %v", perr)
		}
		return ActionRequest{By: v.Get("by"), Reason: v.Get("reason")}, true, nil
	}
	if len(trimmed) == 0 {
		return req, false, nil
	}
	if err := strictJSON(trimmed, &req); err != nil {
		return req, false, err
	}
	return req, false, nil
}

func checkText(field, s string, maxLen int, required bool) (string, error) {
	s = strings.TrimSpace(s)
	if required && s == "" {
		return "", fmt.Errorf("%s is required: the audit record says why", field)
	}
	if len(s) > maxLen {
		return "", fmt.Errorf("%s: at most %d bytes", field, maxLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return "", fmt.Errorf("%s: no control characters", field)
		}
	}
	return s, nil
}

func (a *api) deviceAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := a.poolKeys(w, r)
		if !ok {
			return
		}
		dev := r.PathValue("device")
		req, form, err := readAction(w, r)
		fail := func(code int, msg string) {
			if form {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				w.WriteHeader(code)
				fmt.Fprintf(w, "medic: %s\n\nBack to the status page: /\n", msg)
				return
			}
			writeError(w, code, msg)
		}
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		if err := validDevice(dev); err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		reason, err := checkText("reason", req.Reason, 1024, true)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		by, err := checkText("by", req.By, 128, false)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		if a.o.Who != nil {
			by = a.o.Who(r, by)
		} else if by == "" {
			by = "anonymous"
		}
		client := a.o.Coordinator.o.Client
		if _, err := ReadDevice(r.Context(), client, k, dev); err != nil {
			if errors.Is(err, ErrUnknownDevice) {
				fail(http.StatusNotFound, err.Error())
			} else {
				fail(http.StatusServiceUnavailable, err.Error())
			}
			return
		}
		do := RetryDevice
		if action == "skip" {
			do = SkipDevice
		}
		res, err := do(r.Context(), client, k, dev, by, reason)
		switch {
		case errors.Is(err, ErrNotBlocked):
			fail(http.StatusConflict, err.Error())
			return
		case err != nil:
			fail(http.StatusServiceUnavailable, err.Error())
			return
		}
		a.o.Logger.Warn("device "+action, "pool", k.Pool(), "device", dev, "seq", res.Seq, "by", by, "reason", reason, "dead_letter", res.DeadLetter)
		if form {
			http.Redirect(w, r, "/#blocked-devices", http.StatusSeeOther)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}
