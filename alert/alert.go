// Package alert holds the alert as medic sees it and the one decoder of
// Alertmanager's webhook payload. Every path an alert takes into medic (the
// bridge's webhook, `medic plan`, `medic run`, `medic test`, `medic
// backtest`) decodes it here, so that none can accept what another refuses
// (docs/design.md §8, "One decision path"). It is a leaf: the config
// language (hcl) and the router (route) import it, not the other way round.
package alert

import "time"

// Alert is the part of an Alertmanager alert that runbooks see as `alert`.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Status      string            `json:"status"` // "firing" or "resolved"
	StartsAt    time.Time         `json:"startsAt"`
	Fingerprint string            `json:"fingerprint,omitempty"`
}
