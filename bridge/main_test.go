package bridge

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/medicops/medic/jobs"
	"github.com/medicops/medic/runbooks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startConsumer runs a node's job consumer until the test ends: the
// bridge's tests follow a webhook to the record the node stores.
func startConsumer(t *testing.T, o jobs.ConsumerOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := jobs.NewConsumer(o).Run(ctx); err != nil {
			t.Errorf("consumer: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type runnerFunc func(context.Context, runbooks.Request) *runbooks.RunRecord

func (f runnerFunc) Run(ctx context.Context, req runbooks.Request) *runbooks.RunRecord {
	return f(ctx, req)
}
