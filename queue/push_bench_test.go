package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkPushClient compares the agent's hand-written HTTP/1.1 client
// (push.go) with net/http's, pushing real-sized configs to loopback devices
// that answer after a device's latency, one worker per device as the agent
// has. The devices run in this process with either client, so the
// difference of CPU per push is the clients' (BENCHMARKS.md, "Hand-written
// code against the library").
func BenchmarkPushClient(b *testing.B) {
	for _, tc := range []struct {
		devices int
		latency time.Duration
	}{{100, 5 * time.Millisecond}, {100, 50 * time.Millisecond}} {
		for _, client := range []string{"hand", "net-http"} {
			b.Run(fmt.Sprintf("%s/%d-devices-%s", client, tc.devices, tc.latency), func(b *testing.B) {
				benchPushClient(b, client == "hand", tc.devices, tc.latency)
			})
		}
	}
}

func benchPushClient(b *testing.B, hand bool, devices int, latency time.Duration) {
	urls := make([]string, devices)
	for i := range urls {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(latency)
			w.WriteHeader(http.StatusOK)
		}))
		b.Cleanup(srv.Close)
		urls[i] = srv.URL + "/api/config"
	}
	p := newPusher(10 * time.Second)
	defer p.closeIdle()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}}
	defer hc.CloseIdleConnections()
	body := benchPayload("sw-0001", 1)
	push := func(ctx context.Context, u string, seq int) error {
		s := strconv.Itoa(seq)
		hdr := []pushHeader{{"Content-Type", "application/json"}, {"Idempotency-Key", "sw:" + s}, {"X-Medic-Seq", s}, {"X-Medic-Epoch", "1"}, {"X-Medic-Agent", "a1"}, {"X-Medic-Pool", "p"}}
		if hand {
			t, err := p.target(u)
			if err != nil {
				return err
			}
			code, err := p.do(ctx, t, body, hdr)
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d", code)
			}
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		for _, h := range hdr {
			req.Header.Set(h.name, h.value)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	// A scenario: at least 40 pushes per device whatever b.N (make bench
	// runs it once, -benchtime=1x).
	per := max(40, b.N/devices)
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	cpu0, start := procCPU(os.Getpid()), time.Now()
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := push(context.Background(), urls[d], i+1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), procCPU(os.Getpid())-cpu0
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	n := per * devices
	limit := float64(devices) / latency.Seconds()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "pushes/s")
	b.ReportMetric(float64(n)/elapsed.Seconds()/limit, "of-limit")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/push")
}
