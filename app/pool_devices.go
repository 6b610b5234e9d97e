package app

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/bridge"
	"github.com/medicops/medic/queue"
)

// operatorName is who a pool device retry or skip is recorded as: the
// bridge's authenticated caller, else the request's "by".
func operatorName(r *http.Request, by string) string {
	return bridge.CallerFrom(r.Context()).Who(by)
}

// jsonPeek bounds how much of a POST body jsonFirst reads ahead.
const jsonPeek = 64

// jsonFirst lets a JSON body through as JSON whatever its Content-Type:
// `curl -d '{"reason":…}'` sends application/x-www-form-urlencoded, which
// the bridge's Write would otherwise parse as a form. A real form's body
// never starts with '{'.
func jsonFirst(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			head := make([]byte, jsonPeek)
			n, _ := io.ReadFull(r.Body, head)
			head = head[:n]
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
			if t := bytes.TrimLeft(head, " \t\r\n"); len(t) > 0 && t[0] == '{' {
				r.Header.Set("Content-Type", "application/json")
			}
		}
		h.ServeHTTP(w, r)
	})
}

// maxBlockedShown bounds the blocked devices the status page lists per
// pool; it says how many more there are.
const maxBlockedShown = 20

// blockedDevices reads a pool's blocked devices for the status page,
// longest blocked first.
func blockedDevices(ctx context.Context, c redis.UniversalClient, k queue.Keys) ([]bridge.BlockedDevice, int64, string) {
	page, err := queue.ListDevices(ctx, c, k, queue.StateBlocked, 0, maxBlockedShown)
	if err != nil {
		return nil, 0, err.Error()
	}
	out := make([]bridge.BlockedDevice, 0, len(page.Devices))
	for _, d := range page.Devices {
		bd := bridge.BlockedDevice{Device: d.Device, Seq: d.NextSeq, Pending: d.Pending, Attempts: d.Attempts,
			LastStatus: d.LastStatus, LastError: d.LastError}
		if d.Since != nil {
			bd.Since = *d.Since
		}
		out = append(out, bd)
	}
	return out, page.Total, ""
}
