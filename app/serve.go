package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

// processRegistry returns reg (a new registry when nil) with what every
// medic process exports about itself: Go runtime, process and build.
func processRegistry(reg *prometheus.Registry) *prometheus.Registry {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("medic"),
	)
	return reg
}

// firstError carries the first error that ends a command; later ones are
// dropped, because the first is the cause.
type firstError chan error

func newFirstError() firstError { return make(firstError, 1) }

func (f firstError) report(err error) {
	select {
	case f <- err:
	default:
	}
}

// httpServer is a command's HTTP side: every address is bound before
// anything is served, so that a busy port fails the start rather than a
// goroutine, and each listener is served through exporter-toolkit (TLS and
// basic auth of --web.config.file).
type httpServer struct {
	srv       *http.Server
	listeners []net.Listener
	// Addrs are the bound addresses (127.0.0.1:0 resolved).
	Addrs []string
}

// ServerTimeouts bound what a client may hold a server's connection for.
// Every medic server (bridge, node, serve, demo, agent, demo agent and
// device) sets all four: without ReadTimeout an unauthenticated client
// that sends its body one byte at a time holds a connection for ever.
type ServerTimeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// Read bounds reading a whole request, headers and body.
	Read time.Duration
	// Write bounds a request from the end of its headers to the end of
	// its answer. It must outlast the longest handler: POST
	// /api/v1/pools/{pool}/switchover waits up to 30 s. pprof's
	// profile and trace, whose ?seconds= may ask for longer, lift it
	// (MountPprof).
	Write time.Duration
	// Idle bounds a keep-alive connection between requests.
	Idle time.Duration
}

// DefaultServerTimeouts are what a zero ServerTimeouts means.
var DefaultServerTimeouts = ServerTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 90 * time.Second, Idle: 2 * time.Minute}

// Server is an http.Server for h with these timeouts, defaults for the
// zero ones.
func (t ServerTimeouts) Server(h http.Handler) *http.Server {
	d := DefaultServerTimeouts
	pick := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: pick(t.ReadHeader, d.ReadHeader),
		ReadTimeout:       pick(t.Read, d.Read),
		WriteTimeout:      pick(t.Write, d.Write),
		IdleTimeout:       pick(t.Idle, d.Idle),
	}
}

func listen(addrs []string, h http.Handler, t ServerTimeouts) (*httpServer, error) {
	s := &httpServer{srv: t.Server(h)}
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, l)
		s.Addrs = append(s.Addrs, l.Addr().String())
	}
	return s, nil
}

// serve serves every listener until shutdown; an error that ends serving
// goes to fail.
func (s *httpServer) serve(addrs []string, webConfigFile string, log *slog.Logger, fail func(error)) {
	flags := &web.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &webConfigFile}
	for _, l := range s.listeners {
		go func() {
			if err := web.Serve(l, s.srv, flags, log); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fail(err)
			}
		}()
	}
}

// shutdown stops taking requests and waits, up to ShutdownTimeout, for
// those in flight.
func (s *httpServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	s.close()
}

// close closes the listeners web.Serve never reached (it fails before
// serving on a bad --web.config.file); closing a served one again is
// harmless.
func (s *httpServer) close() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// saveRecords stores each watchdog run record, each save bounded in time
// so that a slow Redis cannot hold the watchdog.
func saveRecords(store *jobs.RunStore, log *slog.Logger) func(*runbooks.RunRecord) {
	return func(rec *runbooks.RunRecord) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := store.Save(ctx, rec); err != nil {
			log.Error("store watchdog run record", "run", rec.ID, "err", err)
		}
	}
}

// begin is what every long-running command begins with: its logger (a
// discarding one when nil), its configuration and the loader a reload
// calls again.
func begin(logger *slog.Logger, configFile string) (log *slog.Logger, cfg *hcl.Config, load func() (*hcl.Config, error), err error) {
	log = logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	load = func() (*hcl.Config, error) { return LoadConfig(configFile) }
	cfg, err = load()
	return log, cfg, load, err
}

// cleanupList runs in reverse order of being added: what started last stops
// first.
type cleanupList []func()

func (c *cleanupList) add(f func()) { *c = append(*c, f) }

func (c cleanupList) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// MountPprof serves Go's profiles under /debug/pprof/ (--web.enable-pprof,
// off by default: a profile shows the process's internals, and a CPU
// profile costs CPU while it runs). Behind the same --web.config.file as
// everything else.
func MountPprof(mux *http.ServeMux) {
	// pprof answers ?seconds= longer than the server's WriteTimeout with
	// a 400 unless the deadline is lifted for it.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", noWriteDeadline(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", noWriteDeadline(pprof.Trace))
}

// noWriteDeadline lifts the server's WriteTimeout for a handler that
// streams for as long as its caller asks (pprof's profile and trace).
func noWriteDeadline(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		h(w, r)
	}
}
