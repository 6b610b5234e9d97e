package promx

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterReturnsTheFirst(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "medic_test_total", Help: "h"}
	a := Register(reg, prometheus.NewCounter(opts))
	b := Register(reg, prometheus.NewCounter(opts))
	if a != b {
		t.Fatal("second registration did not return the first collector")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a conflicting registration did not panic")
		}
	}()
	Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "medic_test_total", Help: "other help"}))
}
