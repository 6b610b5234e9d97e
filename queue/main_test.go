package queue

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/medicops/medic/internal/procsig"
)

// TestMain doubles as the agent process of the subprocess tests: with
// MEDIC_QUEUE_TEST_AGENT set, the test binary runs one Consumer as a real
// child process that the test can SIGKILL, SIGSTOP and SIGCONT — or that
// SIGKILLs / SIGSTOPs itself at an exact point of the delivery protocol.
func TestMain(m *testing.M) {
	if os.Getenv("MEDIC_QUEUE_TEST_AGENT") != "" {
		os.Exit(agentProcess())
	}
	goleak.VerifyTestMain(m)
}

// agentProcess env:
//
//	AGENT_REDIS   redis address or redis+cluster URL
//	AGENT_POOL, AGENT_ID, AGENT_DEVICE_BASE (device URL prefix; + DEVICE + /config)
//	AGENT_HB      heartbeat interval (timeout is 4x)
//	AGENT_AT      POINT:N — at the Nth time POINT is reached, act:
//	              before-push, after-reply (device applied, not acked),
//	              after-ack (mid-batch), stop-before-push (SIGSTOP self)
func agentProcess() int {
	addr := os.Getenv("AGENT_REDIS")
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	hb, err := time.ParseDuration(os.Getenv("AGENT_HB"))
	if err != nil {
		hb = 20 * time.Millisecond
	}
	base := os.Getenv("AGENT_DEVICE_BASE")
	c, err := NewConsumer(ConsumerOptions{
		Client: client, Pool: os.Getenv("AGENT_POOL"), Agent: os.Getenv("AGENT_ID"), Host: "child",
		DeviceURL:         func(d string) (string, error) { return base + d + "/config", nil },
		HeartbeatInterval: hb, HeartbeatTimeout: 4 * hb,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, Batch: 20,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if at := os.Getenv("AGENT_AT"); at != "" {
		point, nStr, _ := strings.Cut(at, ":")
		n, _ := strconv.Atoi(nStr)
		var count atomic.Int64
		act := func(sig syscall.Signal) func(string, int64) {
			return func(d string, seq int64) {
				if count.Add(1) == int64(n) {
					fmt.Fprintf(os.Stderr, "agent %s: %s at %s:%d\n", os.Getenv("AGENT_ID"), sig, d, seq)
					_ = procsig.Self(sig)
					if sig == syscall.SIGKILL {
						select {}
					}
				}
			}
		}
		switch point {
		case "before-push":
			c.hooks.beforePush = act(syscall.SIGKILL)
		case "after-reply":
			c.hooks.afterReply = act(syscall.SIGKILL)
		case "after-ack":
			c.hooks.afterAck = act(syscall.SIGKILL)
		case "stop-before-push":
			c.hooks.beforePush = act(syscall.SIGSTOP)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
