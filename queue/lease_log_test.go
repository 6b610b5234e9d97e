package queue

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCoordinatorLeaseLostLog: when Redis goes away, the coordinator says
// once, as a warning with the cause, that it lost its lease and what that
// means, and says it again only after the lease was back.
func TestCoordinatorLeaseLostLog(t *testing.T) {
	srv, client := standalone(t, false)
	h := newHarness(t, client, "", "ll")
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	h.startCoordinator(nil, func(o *CoordinatorOptions) { o.Logger = logger })
	waitFor(t, 3*time.Second, "lease held", func() bool { return strings.Contains(logs.String(), "held=true") })

	srv.Kill()
	waitFor(t, 5*time.Second, "lease-lost warning", func() bool { return strings.Contains(logs.String(), "coordinator lease lost") })
	time.Sleep(time.Second) // many ticks without Redis
	var lost []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "coordinator lease lost") {
			lost = append(lost, l)
		}
	}
	if len(lost) != 1 || !strings.Contains(lost[0], "level=WARN") || !strings.Contains(lost[0], "err=") {
		t.Fatalf("want one WARN line with the Redis error, got %q\nlog:\n%s", lost, logs.String())
	}

	srv.Restart()
	waitFor(t, 10*time.Second, "lease held again", func() bool { return strings.Count(logs.String(), "held=true") == 2 })
}
