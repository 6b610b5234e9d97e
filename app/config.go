package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/queue"
)

// PoolSpecs is what the pool coordinator needs of the configuration's pools.
func PoolSpecs(cfg *hcl.Config) []queue.PoolSpec {
	specs := make([]queue.PoolSpec, 0, len(cfg.Pools))
	for _, p := range cfg.Pools {
		specs = append(specs, queue.PoolSpec{Name: p.Name, Agents: p.Agents, CheckInterval: p.CheckInterval})
	}
	return specs
}

// LoadConfig loads --config.file and turns error diagnostics into one
// error that lists each as `medic validate` prints it: file:line:col:
// severity: summary, the detail indented below, and the source lines.
func LoadConfig(path string) (*hcl.Config, error) {
	srcs, diags := hcl.ReadSources(path)
	if diags.HasErrors() {
		return nil, diagsError(path, diags, srcs)
	}
	cfg, more := hcl.LoadSources(srcs)
	diags = append(diags, more...)
	if diags.HasErrors() || cfg == nil {
		return nil, diagsError(path, diags, srcs)
	}
	return cfg, nil
}

// diagsError keeps the detail and snippet of each error: the summary alone
// ("Invalid duration") does not say what to fix.
func diagsError(path string, diags hcl2.Diagnostics, srcs []hcl.Source) error {
	var errs hcl2.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl2.DiagError {
			errs = append(errs, d)
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("load %s: no configuration", path)
	}
	sources := make(map[string][]byte, len(srcs))
	for _, s := range srcs {
		sources[s.Name] = s.Bytes
	}
	var b strings.Builder
	_ = hcl.WriteDiagnostics(&b, errs, sources) // a strings.Builder does not fail
	text := strings.TrimRight(b.String(), "\n")
	return fmt.Errorf("load %s:\n  %s", path, strings.ReplaceAll(text, "\n", "\n  "))
}

// reloader holds the current configuration and swaps in a new one only
// after it parsed and validated and every component accepted it. SIGHUP
// and POST /-/reload both go through its one goroutine; the HTTP caller
// gets the error, and a failed reload keeps the old configuration.
type reloader struct {
	load  func() (*hcl.Config, error)
	apply []func(context.Context, *hcl.Config) error
	log   *slog.Logger

	cur  atomic.Pointer[hcl.Config]
	reqs chan chan error
	// stopped is closed when run returns: a reload asked for during
	// shutdown is refused rather than left waiting for an answer.
	stopped chan struct{}

	// now is the clock of the last-reload metrics.
	now func() time.Time
	// ok and okTime are medic_config_last_reload_successful and
	// medic_config_last_reload_success_timestamp_seconds.
	ok, okTime prometheus.Gauge
}

func newReloader(cfg *hcl.Config, load func() (*hcl.Config, error), log *slog.Logger) *reloader {
	r := &reloader{
		load: load, log: log, reqs: make(chan chan error), stopped: make(chan struct{}), now: time.Now,
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful (the start-up load counts as one).",
		}),
		okTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload (or the start-up load).",
		}),
	}
	r.cur.Store(cfg)
	r.ok.Set(1)
	r.okTime.Set(float64(r.now().UnixNano()) / 1e9)
	return r
}

// register puts the last-reload metrics on reg, as Prometheus and
// Alertmanager have them, so that a failed reload (which keeps the old
// configuration and is easy to miss) can be alerted on.
func (r *reloader) register(reg prometheus.Registerer) {
	reg.MustRegister(r.ok, r.okTime)
}

// Config is the current configuration.
func (r *reloader) Config() *hcl.Config { return r.cur.Load() }

// Reload asks the reload goroutine to reload and waits for its answer.
func (r *reloader) Reload(ctx context.Context) error {
	ch := make(chan error, 1)
	select {
	case r.reqs <- ch:
	case <-r.stopped:
		return errors.New("shutting down")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run serves reload requests and SIGHUP until ctx ends. Call it once.
func (r *reloader) run(ctx context.Context) {
	defer close(r.stopped)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := r.reload(ctx); err != nil {
				r.log.Error("reload on SIGHUP failed; keeping the old configuration", "err", err)
			}
		case ch := <-r.reqs:
			ch <- r.reload(ctx)
		}
	}
}

func (r *reloader) reload(ctx context.Context) error {
	err := r.tryReload(ctx)
	if err != nil {
		r.ok.Set(0)
		return err
	}
	r.ok.Set(1)
	r.okTime.Set(float64(r.now().UnixNano()) / 1e9)
	return nil
}

func (r *reloader) tryReload(ctx context.Context) error {
	if r.load == nil {
		return errors.New("this process has no configuration file to reload")
	}
	cfg, err := r.load()
	if err != nil {
		return err
	}
	for _, f := range r.apply {
		if err := f(ctx, cfg); err != nil {
			return err
		}
	}
	r.cur.Store(cfg)
	r.log.Info("configuration reloaded", "agents", len(cfg.Agents), "runbooks", len(cfg.Runbooks), "pools", len(cfg.Pools))
	return nil
}

// ServeHTTP is medic node's POST /-/reload: the caller gets the reload's
// error.
func (r *reloader) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if err := r.Reload(req.Context()); err != nil {
		http.Error(w, "reload: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "configuration reloaded")
}
