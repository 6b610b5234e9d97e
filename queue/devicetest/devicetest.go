package devicetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Outcomes of a request.
const (
	Applied    = "applied"     // 200, state advanced
	Replay     = "replay"      // 200, Idempotency-Key already applied
	Stale      = "stale-epoch" // 409, epoch below one seen before
	OutOfOrder = "out-of-order"
	Bad        = "bad-request"
	Injected   = "injected-failure" // 503 from Fail
	Rejected   = "rejected"         // the code from Reject
)

// Event is one request as the device saw it.
type Event struct {
	Device  string    `json:"device"`
	Seq     int64     `json:"seq"`
	Epoch   int64     `json:"epoch"`
	Agent   string    `json:"agent"`
	Key     string    `json:"key"`
	Payload string    `json:"payload"`
	Outcome string    `json:"outcome"`
	At      time.Time `json:"at"`
}

type device struct {
	last     int64 // last applied seq
	maxEpoch int64
	applied  map[string]bool // Idempotency-Key → applied
	history  []Event
	skipped  map[int64]bool // seqs an operator skipped (see Skip)
}

// Server serves POST {URL}/devices/{device}/config.
type Server struct {
	mu      sync.Mutex
	devices map[string]*device
	srv     *httptest.Server

	// Fail, when set, is asked (under the server's lock) before each
	// request is judged; true makes the device answer 503 without looking
	// at it. Set it before requests arrive, or use SetFail.
	Fail func(device string, seq int64) bool
	// BeforeReply, when set, runs after a request was judged and before
	// the answer is written (e.g. to kill the agent between the device
	// applying a config and the agent hearing about it).
	BeforeReply func(ev Event)
	// Delay, when set, is slept before judging each request.
	Delay time.Duration
	// Reject, when set, is asked (under the server's lock) before each
	// request is judged; a non-zero code is answered without applying
	// (e.g. 400: the device refuses this config). Use SetReject while
	// requests are being served.
	Reject func(device string, seq int64) int
}

// SetReject replaces Reject safely while requests are being served.
func (s *Server) SetReject(f func(device string, seq int64) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Reject = f
}

// Skip tells the device that an operator skipped seq (medic's device skip):
// it will never get it, and takes seq+1 as next in order. Check expects
// a skipped seq applied zero times.
func (s *Server) Skip(dev string, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dev(dev)
	d.skipped[seq] = true
}

func (s *Server) dev(name string) *device {
	d := s.devices[name]
	if d == nil {
		d = &device{applied: map[string]bool{}, skipped: map[int64]bool{}}
		s.devices[name] = d
	}
	return d
}

// New starts a Server on 127.0.0.1:0; Close stops it.
func New() *Server {
	s := &Server{devices: map[string]*device{}}
	s.srv = httptest.NewServer(s)
	return s
}

// SetFail replaces Fail safely while requests are being served.
func (s *Server) SetFail(f func(device string, seq int64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Fail = f
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// Template is a device_url template for the server, over ${device}.
func (s *Server) Template() string { return s.srv.URL + "/devices/${device}/config" }

// DeviceURL renders Template for one device.
func (s *Server) DeviceURL(dev string) (string, error) {
	return s.srv.URL + "/devices/" + dev + "/config", nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/devices/")
	dev, ok2 := strings.CutSuffix(rest, "/config")
	if !ok || !ok2 || dev == "" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.Delay > 0 {
		time.Sleep(s.Delay)
	}
	ev := Event{Device: dev, Key: r.Header.Get("Idempotency-Key"), Agent: r.Header.Get("X-Medic-Agent"),
		Payload: string(body), At: time.Now()}
	var err2 error
	ev.Seq, err = strconv.ParseInt(r.Header.Get("X-Medic-Seq"), 10, 64)
	ev.Epoch, err2 = strconv.ParseInt(r.Header.Get("X-Medic-Epoch"), 10, 64)
	code := http.StatusOK
	s.mu.Lock()
	d := s.dev(dev)
	for d.skipped[d.last+1] {
		d.last++
	}
	rejectCode := 0
	if s.Reject != nil {
		rejectCode = s.Reject(dev, ev.Seq)
	}
	switch {
	case s.Fail != nil && s.Fail(dev, ev.Seq):
		ev.Outcome, code = Injected, http.StatusServiceUnavailable
	case rejectCode != 0:
		ev.Outcome, code = Rejected, rejectCode
	case err != nil || err2 != nil || ev.Key != dev+":"+strconv.FormatInt(ev.Seq, 10) || !json.Valid(body):
		ev.Outcome, code = Bad, http.StatusBadRequest
	case ev.Epoch < d.maxEpoch:
		ev.Outcome, code = Stale, http.StatusConflict
	case d.applied[ev.Key]:
		d.maxEpoch = ev.Epoch
		ev.Outcome = Replay
	case ev.Seq != d.last+1:
		d.maxEpoch = ev.Epoch
		ev.Outcome, code = OutOfOrder, http.StatusConflict
	default:
		d.maxEpoch = ev.Epoch
		d.last = ev.Seq
		d.applied[ev.Key] = true
		ev.Outcome = Applied
	}
	d.history = append(d.history, ev)
	s.mu.Unlock()
	if s.BeforeReply != nil {
		s.BeforeReply(ev)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"outcome\":%q,\"seq\":%d}\n", ev.Outcome, ev.Seq)
}

// History returns a copy of every request a device got, in arrival order.
func (s *Server) History(dev string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[dev]
	if d == nil {
		return nil
	}
	return append([]Event(nil), d.history...)
}

// Devices lists the devices that got at least one request.
func (s *Server) Devices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for d := range s.devices {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Applied returns the last seq a device applied (how many configs it
// applied, plus any skipped before that seq).
func (s *Server) Applied(dev string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[dev]; d != nil {
		return d.last
	}
	return 0
}

// AppliedTotal sums Applied over all devices.
func (s *Server) AppliedTotal() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, d := range s.devices {
		n += d.last
	}
	return n
}

// Check verifies the dispatch guarantees from the recorded history against
// what was published (device → payloads in seq order, seq 1 first):
//
//   - applied seqs strictly increase with no gaps;
//   - every published config is applied exactly once, with its payload;
//   - nothing unpublished is applied;
//   - no push is applied whose epoch is below an epoch the device saw
//     before it.
//
// It returns one line per violation.
func (s *Server) Check(published map[string][]string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad []string
	devs := map[string]bool{}
	for d := range published {
		devs[d] = true
	}
	for d := range s.devices {
		devs[d] = true
	}
	for dev := range devs {
		want := published[dev]
		var hist []Event
		if d := s.devices[dev]; d != nil {
			hist = d.history
		}
		var maxEpoch, next int64 = 0, 1
		count := map[int64]int{}
		var skipped map[int64]bool
		if d := s.devices[dev]; d != nil {
			skipped = d.skipped
		}
		for _, ev := range hist {
			if ev.Outcome == Applied {
				for skipped[next] && ev.Seq > next {
					next++
				}
				if ev.Epoch < maxEpoch {
					bad = append(bad, fmt.Sprintf("%s: seq %d applied with stale epoch %d after epoch %d (agent %s)", dev, ev.Seq, ev.Epoch, maxEpoch, ev.Agent))
				}
				if ev.Seq != next {
					bad = append(bad, fmt.Sprintf("%s: applied seq %d, want %d", dev, ev.Seq, next))
				}
				next = ev.Seq + 1
				count[ev.Seq]++
				switch {
				case ev.Seq < 1 || ev.Seq > int64(len(want)):
					bad = append(bad, fmt.Sprintf("%s: applied seq %d that was never published", dev, ev.Seq))
				case !jsonEqual(want[ev.Seq-1], ev.Payload):
					bad = append(bad, fmt.Sprintf("%s: seq %d payload %q, published %q", dev, ev.Seq, ev.Payload, want[ev.Seq-1]))
				}
			}
			if ev.Outcome != Injected && ev.Outcome != Bad && ev.Outcome != Rejected && ev.Epoch > maxEpoch {
				maxEpoch = ev.Epoch
			}
		}
		for i := range want {
			if skipped[int64(i+1)] {
				if n := count[int64(i+1)]; n != 0 {
					bad = append(bad, fmt.Sprintf("%s: skipped seq %d applied %d times", dev, i+1, n))
				}
				continue
			}
			if n := count[int64(i+1)]; n != 1 {
				bad = append(bad, fmt.Sprintf("%s: seq %d applied %d times", dev, i+1, n))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func jsonEqual(a, b string) bool {
	if a == b {
		return true
	}
	var x, y bytes.Buffer
	if json.Compact(&x, []byte(a)) != nil || json.Compact(&y, []byte(b)) != nil {
		return false
	}
	return x.String() == y.String()
}
