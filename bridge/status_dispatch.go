package bridge

import (
	"html/template"
	"time"
)

// BlockedDevice is a pool device the agent stopped pushing to, as the
// status page lists it with retry and skip buttons.
type BlockedDevice struct {
	Device     string
	Seq        int64 // the config it is held on
	Pending    int64
	Attempts   int64
	LastStatus int
	LastError  string
	Since      time.Time
}

// The "blocked devices" section is its own template
// (templates/dispatch.html), added to the status page's.
var _ = template.Must(statusTmpl.ParseFS(statusFS, "templates/dispatch.html"))
