package app

import (
	"fmt"
	"log/slog"
	"os"
)

// warnTokenFileMode warns when the bearer token file can be read by
// anyone but its owner: whoever reads it can act on every endpoint.
// Only a warning: a group-readable file may be deliberate (a sidecar in
// the group), and refusing to start would page someone at 3 a.m.
func warnTokenFileMode(log *slog.Logger, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return // readToken has reported it
	}
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		log.Warn("the token file is readable by group or others; make it readable by medic's user only",
			"file", path, "mode", fmt.Sprintf("%04o", perm), "fix", fmt.Sprintf("chmod 600 %s", path))
	}
}
