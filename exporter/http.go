package exporter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxHeartbeatBody bounds a heartbeat request body.
const maxHeartbeatBody = 4 << 10

// Handler serves the node's HTTP API: GET /metrics, PUT and DELETE
// /api/v1/heartbeats/{agent}, GET /api/v1/agents and GET /-/healthy; its
// writes behind CrossOriginGuard.
// POST /-/reload is not here: the command that embeds the node owns the
// configuration and serves it (package app's reloader, which calls
// ApplyConfig).
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	if n.opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(n.opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      nil,
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	// PUT only: a browser cannot send a cross-site PUT without a CORS
	// preflight, which the node never answers; a POST gets 405 with Allow.
	mux.HandleFunc("PUT /api/v1/heartbeats/{agent}", n.handleBeat)
	mux.HandleFunc("DELETE /api/v1/heartbeats/{agent}", n.handleUnregister)
	mux.HandleFunc("GET /api/v1/agents", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.State())
	})
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Healthy")
	})
	return CrossOriginGuard(mux)
}

// CrossOriginGuard refuses (403) a write (any method but GET, HEAD and
// OPTIONS) that a browser marks as cross-origin (Sec-Fetch-Site, or an
// Origin that is not the request's host), as the bridge does: a web page
// that a browser on the node's host opens must not be able to beat, drop
// an agent's heartbeat or reload the node. Loopback is no protection
// against that: the browser is on the loopback too. Programs (curl, the
// heartbeat client) send neither header and pass.
func CrossOriginGuard(h http.Handler) http.Handler { return nodeCOP.Handler(h) }

var nodeCOP = func() *http.CrossOriginProtection {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusForbidden, "forbidden: cross-origin request")
	}))
	return cop
}()

type beatRequest struct {
	Timeout string `json:"timeout"`
}

func (n *Node) handleBeat(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("agent")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHeartbeatBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxHeartbeatBody))
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req beatRequest
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) && typ.Field == "timeout" {
				writeError(w, http.StatusBadRequest, fmt.Sprintf(`invalid JSON: timeout must be a duration string such as {"timeout":"15s"}, not a %s`, typ.Value))
				return
			}
			writeError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
			return
		}
	}
	var timeout time.Duration
	if req.Timeout != "" {
		if timeout, err = time.ParseDuration(req.Timeout); err != nil || timeout <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf(`invalid timeout %q: want a positive duration with a unit, such as "15s" or "1m"`, req.Timeout))
			return
		}
	}
	if err := n.Heartbeat(name, timeout); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, ErrUnknownAgent) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	a, _ := n.agent(name)
	hb := a.heartbeatState()
	writeJSON(w, http.StatusOK, map[string]any{"agent": name, "timeout": hb.timeout.String(), "registered": true})
}

func (n *Node) handleUnregister(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("agent")
	if err := n.Unregister(name); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": name, "registered": false})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
