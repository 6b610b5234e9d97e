package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/medicops/medic/queue"
)

// The demo device's limits: it lives in the demo's own process, so a loop
// publishing forever must not grow it without bound.
const (
	demoMaxDevices = 100
	demoMaxApplied = 1000 // per device; older entries are counted, not kept
)

// demoDevice is the built-in device of `medic demo`: one handler standing
// in for any number of devices, mounted on the demo's own listener. It
// keeps the device contract of docs/dispatch.md the strict way
// (queue/devicetest is its model): a config is applied only as the
// device's next seq, a push whose X-Medic-Epoch is below one the device has
// seen is rejected, and a replay of an applied Idempotency-Key is answered
// 200 and not applied again. GET shows what it applied, in order, and which
// agent delivered each config, so a switchover can be seen in the list.
//
//	POST /demo/devices/{device}/config   the pool's device_url
//	GET  /demo/devices/{device}          {"device","last_seq","max_epoch","applied":[…],…}
type demoDevice struct {
	mu      sync.Mutex
	devices map[string]*demoDeviceState
	now     func() time.Time
}

type demoDeviceState struct {
	Device   string         `json:"device"`
	LastSeq  int64          `json:"last_seq"`
	MaxEpoch int64          `json:"max_epoch"`
	Applied  []demoApplied  `json:"applied,omitempty"` // show writes it last, a line each
	Earlier  int64          `json:"earlier_not_listed,omitempty"`
	Refused  map[string]int `json:"refused"` // outcome → count
	Replays  int            `json:"replays"`
}

type demoApplied struct {
	Seq     int64           `json:"seq"`
	Epoch   int64           `json:"epoch"`
	Agent   string          `json:"agent"`
	Payload json.RawMessage `json:"payload"`
	At      time.Time       `json:"at"`
}

func newDemoDevice() *demoDevice {
	return &demoDevice{devices: map[string]*demoDeviceState{}, now: time.Now}
}

func (d *demoDevice) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /demo/devices/{device}/config", d.push)
	mux.HandleFunc("GET /demo/devices/{device}", d.show)
}

func (d *demoDevice) push(w http.ResponseWriter, r *http.Request) {
	dev := r.PathValue("device")
	body, err := io.ReadAll(io.LimitReader(r.Body, queue.MaxPayload+1))
	if err != nil {
		demoDeviceReply(w, http.StatusBadRequest, "bad-request", 0, err.Error())
		return
	}
	seq, err1 := strconv.ParseInt(r.Header.Get("X-Medic-Seq"), 10, 64)
	epoch, err2 := strconv.ParseInt(r.Header.Get("X-Medic-Epoch"), 10, 64)
	key := r.Header.Get("Idempotency-Key")
	var compact bytes.Buffer
	switch {
	case err1 != nil || err2 != nil || seq < 1:
		demoDeviceReply(w, http.StatusBadRequest, "bad-request", seq, "X-Medic-Seq (1, 2, …) and X-Medic-Epoch must be integers")
		return
	case key != dev+":"+strconv.FormatInt(seq, 10):
		demoDeviceReply(w, http.StatusBadRequest, "bad-request", seq, "Idempotency-Key must be DEVICE:SEQ")
		return
	case len(body) > queue.MaxPayload || json.Compact(&compact, body) != nil:
		demoDeviceReply(w, http.StatusBadRequest, "bad-request", seq, "the body must be a JSON config")
		return
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.devices[dev]
	if st == nil {
		if len(d.devices) >= demoMaxDevices {
			demoDeviceReply(w, http.StatusInsufficientStorage, "full", seq, fmt.Sprintf("the demo device holds at most %d devices", demoMaxDevices))
			return
		}
		st = &demoDeviceState{Device: dev, Applied: []demoApplied{}, Refused: map[string]int{}}
		d.devices[dev] = st
	}
	switch {
	case epoch < st.MaxEpoch:
		// A replaced agent: fenced off.
		st.Refused["stale-epoch"]++
		demoDeviceReply(w, http.StatusConflict, "stale-epoch", seq, fmt.Sprintf("epoch %d is below %d, seen before", epoch, st.MaxEpoch))
		return
	case seq <= st.LastSeq:
		// Applied before (the agent did not hear the answer): 2xx, once.
		st.MaxEpoch = epoch
		st.Replays++
		demoDeviceReply(w, http.StatusOK, "replay", seq, "")
		return
	case seq != st.LastSeq+1:
		st.MaxEpoch = epoch
		st.Refused["out-of-order"]++
		demoDeviceReply(w, http.StatusConflict, "out-of-order", seq, fmt.Sprintf("want seq %d next", st.LastSeq+1))
		return
	}
	st.MaxEpoch, st.LastSeq = epoch, seq
	st.Applied = append(st.Applied, demoApplied{Seq: seq, Epoch: epoch, Agent: r.Header.Get("X-Medic-Agent"),
		Payload: json.RawMessage(compact.Bytes()), At: d.now().UTC()})
	if n := len(st.Applied) - demoMaxApplied; n > 0 {
		st.Applied = append([]demoApplied(nil), st.Applied[n:]...)
		st.Earlier += int64(n)
	}
	demoDeviceReply(w, http.StatusOK, "applied", seq, "")
}

func demoDeviceReply(w http.ResponseWriter, code int, outcome string, seq int64, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Outcome string `json:"outcome"`
		Seq     int64  `json:"seq"`
		Error   string `json:"error,omitempty"`
	}{outcome, seq, msg})
}

// show writes the state as JSON with one applied config a line, so that
// the order (and the agent and epoch of each) reads at a glance.
func (d *demoDevice) show(w http.ResponseWriter, r *http.Request) {
	dev := r.PathValue("device")
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.devices[dev]
	if st == nil {
		st = &demoDeviceState{Device: dev, Applied: []demoApplied{}, Refused: map[string]int{}}
	}
	head := *st
	head.Applied = nil
	data, err := json.Marshal(head)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	b.Write(data[:len(data)-1]) // without the closing brace
	b.WriteString(`,"applied":[`)
	for i, a := range st.Applied {
		line, err := json.Marshal(a)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		b.Write(line)
	}
	if len(st.Applied) > 0 {
		b.WriteByte('\n')
	}
	b.WriteString("]}\n")
	w.Header().Set("Content-Type", "application/json")
	w.Write(b.Bytes())
}
