// Package promx holds the one Prometheus registration rule medic's
// packages share: `medic serve` runs bridge, consumer and engine in one
// registry, and each of them declares the remediation metrics it updates.
package promx

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c, or returns the identical collector registered
// before under the same descriptor. Any other registration error panics,
// as MustRegister would.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
