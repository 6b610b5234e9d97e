package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// maxWindow bounds the configs of one device pushed between two
// acknowledgements (and so how many a successor re-pushes, as replays, when
// an agent dies before recording them).
const maxWindow = 64

// done is a config the device confirmed (pushed) or that an earlier push
// already delivered; it still has to be acknowledged in Redis.
type done struct {
	e      entry
	pushed bool
}

// deliver pushes a window of one device's configs, in order, each until the
// device confirms it or the epoch ends. Every push goes out on a fence
// answer (on duty in this epoch, and where the device is) younger than
// freshFor; the acknowledgement of the pushes so far is that answer, so in
// steady state a device costs one Redis round trip per window, not per
// config. It reports whether the device got blocked (max_attempts
// permanent rejections of its head config).
func (r *epochRun) deliver(q *deviceQueue, window []entry) (blocked bool) {
	d := delivery{r: r, q: q, backoff: r.c.o.RetryMin, pending: q.pending[:0]}
	defer func() {
		d.flush()
		q.pending = d.pending
	}()
	for i := 0; i < len(window) && r.ctx.Err() == nil; {
		if d.e.id != window[i].id {
			d.e, d.logger = window[i], nil
		}
		d.settle(false)
		switch d.next() {
		case deliverNext:
			i++
		case deliverStop:
			return false
		case deliverBlocked:
			return true
		}
	}
	return false
}

// delivery is the state of one deliver call: the config at hand, the
// retry backoff, and what the device confirmed that Redis has not heard
// yet: pending, and sent (one acknowledgement in flight, answered on
// inflight). The acknowledgement goes out halfway through the fence's
// freshness, so its answer — the next fence — usually arrives before the
// pushes need it.
type delivery struct {
	r *epochRun
	q *deviceQueue
	e entry
	// Built on first use: the happy path logs nothing and allocates no logger.
	logger   *slog.Logger
	backoff  time.Duration
	pending  []done
	sent     []done
	inflight chan stepRes
	gapSeen  bool
}

// What one step of a delivery asks deliver to do next.
type deliverStep int

const (
	deliverAgain   deliverStep = iota // the same config again
	deliverNext                       // the config is done: the next one
	deliverStop                       // the epoch ended: stop, not blocked
	deliverBlocked                    // the device got blocked: stop
)

func (d *delivery) log() *slog.Logger {
	if d.logger == nil {
		d.logger = d.r.c.o.Logger.With("device", d.e.device, "seq", d.e.seq, "epoch", d.r.epoch)
	}
	return d.logger
}

func (d *delivery) wait() bool {
	w := d.backoff/2 + rand.N(d.backoff/2+1)
	d.backoff = min(2*d.backoff, d.r.c.o.RetryMax)
	return sleep(d.r.ctx, w)
}

// settle takes the answer to the acknowledgement in flight, if any:
// waiting for it when block, else only if it has arrived.
func (d *delivery) settle(block bool) {
	if d.inflight == nil {
		return
	}
	var res stepRes
	if block {
		res = <-d.inflight // the stepper answers every request it took
	} else {
		select {
		case res = <-d.inflight:
		default:
			return
		}
	}
	d.inflight = nil
	if res.err != nil {
		d.r.ackAll(d.q, d.sent) // retries until Redis answers
	} else {
		d.r.acked(d.q, d.sent, res)
	}
	clear(d.sent)
	d.sent = d.sent[:0]
}

// send starts acknowledging the pending confirmations unless an
// acknowledgement is already in flight.
func (d *delivery) send() {
	if d.inflight != nil || len(d.pending) == 0 {
		return
	}
	if d.inflight = d.r.stepAsync(ackItems(d.pending)); d.inflight == nil {
		d.r.ackAll(d.q, d.pending) // the epoch ended: one synchronous try
		clear(d.pending)
		d.pending = d.pending[:0]
		return
	}
	d.sent, d.pending = d.pending, d.sent[:0]
}

// flush acknowledges everything the device confirmed so far; its
// answer is also the next fence.
func (d *delivery) flush() {
	d.settle(true)
	d.send()
	d.settle(true)
}

// next takes one step with the config at hand: a fence check when the
// last answer is stale, then an acknowledgement alone (delivered before),
// a hold (a gap before it), or a push.
func (d *delivery) next() deliverStep {
	q, e := d.q, d.e
	if q.checked.IsZero() || time.Since(q.checked) > freshFor || !q.checkDuty {
		if !d.fence() {
			return deliverAgain
		}
	}
	if !q.checkDuty {
		d.r.cancel()
		return deliverStop
	}
	switch {
	case e.seq <= q.ack:
		// Delivered before (by this agent before a crash, or by the
		// agent before a switchover): done, acknowledge only.
		d.pending = append(d.pending, done{e: e})
		return deliverNext
	case e.seq > q.ack+1:
		if !d.gapSeen {
			d.gapSeen = true
			d.r.c.o.Metrics.incGap(d.r.c.o.Pool)
			d.log().Error("sequence gap: holding device", "ack", q.ack)
		}
		d.flush()
		d.wait()
		q.checked = time.Time{} // read where the device is again
		return deliverAgain
	}
	if d.gapSeen {
		d.log().Info("sequence gap closed", "ack", q.ack)
		d.gapSeen = false
	}
	return d.push()
}

// fence asks whether the agent is still on duty in its epoch and where
// the device is. false means ask again: the confirmations pending were
// flushed instead (their answer is the fence), or Redis failed.
func (d *delivery) fence() bool {
	if d.inflight != nil || len(d.pending) > 0 {
		d.flush()
		return false
	}
	duty, ack, _, err := d.r.step(d.r.ctx, d.e.device, 0, "")
	if err != nil {
		if d.r.ctx.Err() == nil {
			d.log().Warn("fence check", "err", err)
		}
		d.wait()
		return false
	}
	d.q.checked, d.q.checkDuty, d.q.ack = time.Now(), duty, ack
	return true
}

// push pushes the config at hand to the device.
func (d *delivery) push() deliverStep {
	r, c, q, e := d.r, d.r.c, d.q, d.e
	if time.Since(q.checked) > freshFor/2 {
		d.send()
	}
	if h := c.hooks.beforePush; h != nil {
		h(e.device, e.seq)
	}
	code, err := c.push(r.ctx, e, r.epoch)
	if err != nil || code < 200 || code > 299 {
		return d.failed(code, err)
	}
	if h := c.hooks.afterReply; h != nil {
		h(e.device, e.seq)
	}
	// The device holds e.seq now; Redis hears it with the next
	// acknowledgement.
	q.ack = e.seq
	d.pending = append(d.pending, done{e: e, pushed: true})
	return deliverNext
}

// failed records a failed push and blocks the device or backs off.
func (d *delivery) failed(code int, err error) deliverStep {
	r, c := d.r, d.r.c
	if r.ctx.Err() != nil {
		return deliverStop
	}
	c.o.Metrics.incFailure(c.o.Pool)
	// Redis's ack must be e.seq-1 for the failure to count.
	d.flush()
	state, attempts := r.recordFailure(d.e, code, err)
	if state == StateBlocked {
		d.log().Error("device blocked: it rejected its next config; not pushing to it until an operator retries or skips it",
			"status", code, "attempts", attempts, "max_attempts", c.o.MaxAttempts)
		return deliverBlocked
	}
	d.log().Warn("delivery failed, retrying", "status", code, "err", err, "attempts", attempts)
	d.wait()
	d.q.checked = time.Time{}
	return deliverAgain
}

// recordFailure records a failed push of a device's head config in the
// pool's device state and returns the device's state (retrying or
// blocked; "" when Redis could not be told, so the agent keeps retrying)
// and the config's failed attempts so far.
func (r *epochRun) recordFailure(e entry, code int, perr error) (string, int64) {
	c := r.c
	msg := ""
	if perr != nil {
		msg = perr.Error()
	} else {
		msg = fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	}
	permanent := 0
	if perr == nil && Permanent(code) {
		permanent = 1
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	res, err := failScript.Run(ctx, c.o.Client,
		[]string{c.k.Ctl(), c.k.Ack(), c.k.Dev(), c.k.Retrying(), c.k.Blocked(), c.k.Held()},
		c.o.Agent, r.epoch, e.device, e.seq, code, msg, permanent, c.o.MaxAttempts, e.payload).Slice()
	if err != nil || len(res) != 2 {
		if r.ctx.Err() == nil {
			c.o.Logger.Warn("record delivery failure", "device", e.device, "seq", e.seq, "err", err)
		}
		return "", 0
	}
	return asString(res[0]), asInt(res[1])
}

// ackAll records confirmed (or earlier confirmed) configs of one device, in
// order: ack advances and the entries leave the stream, in one script call
// that also re-checks the fence for the device's next push. It retries
// until Redis answers or the agent stops; a config the device confirmed is
// worth recording even if the epoch ended meanwhile.
func (r *epochRun) ackAll(q *deviceQueue, ds []done) {
	c := r.c
	backoff := c.o.RetryMin
	parent := context.WithoutCancel(r.ctx)
	items := ackItems(ds)
	for {
		actx, cancel := context.WithTimeout(parent, 5*time.Second)
		res, err := r.stepItems(actx, items)
		cancel()
		if err == nil {
			r.acked(q, ds, res)
			return
		}
		c.o.Logger.Warn("acknowledge", "device", ds[0].e.device, "seq", ds[0].e.seq, "epoch", r.epoch, "err", err)
		if r.ctx.Err() != nil {
			// The epoch or the agent ended: whoever is on duty next
			// finds the device's state and acknowledges it then.
			return
		}
		sleep(r.ctx, backoff)
		backoff = min(2*backoff, c.o.RetryMax)
	}
}

func ackItems(ds []done) []stepItem {
	items := make([]stepItem, len(ds))
	for i, d := range ds {
		items[i] = stepItem{device: d.e.device, seq: d.e.seq, id: d.e.id}
	}
	return items
}

// acked takes Redis's answer to an acknowledgement: the fence, and where
// the device is. The device's own confirmations may be ahead of it by the
// pushes made while the answer was on its way.
func (r *epochRun) acked(q *deviceQueue, ds []done, res stepRes) {
	c := r.c
	if res.at.After(q.checked) {
		q.checked, q.checkDuty = res.at, res.duty
	}
	all := true
	for i, d := range ds {
		if !res.acked[i] {
			all = false
			c.o.Logger.Error("device confirmed a config past its ack; leaving it pending",
				"device", d.e.device, "seq", d.e.seq, "epoch", r.epoch, "ack", res.acks[i])
			continue
		}
		if d.pushed {
			c.o.Metrics.incDelivered(c.o.Pool)
		}
		if h := c.hooks.afterAck; h != nil {
			h(d.e.device, d.e.seq)
		}
	}
	if last := res.acks[len(ds)-1]; all {
		q.ack = max(q.ack, last)
	} else {
		q.ack = last
		q.checked = time.Time{} // read where the device is again
	}
	if !res.duty {
		q.checkDuty = false
		r.cancel()
	}
}

// push POSTs one config. The headers let the device drop replays
// (Idempotency-Key) and reject a replaced agent (X-Medic-Epoch).
func (c *Consumer) push(ctx context.Context, e entry, epoch int64) (int, error) {
	url, err := c.o.DeviceURL(e.device)
	if err != nil {
		return 0, fmt.Errorf("device URL: %w", err)
	}
	seq := strconv.FormatInt(e.seq, 10)
	hdr := []pushHeader{
		{"Content-Type", "application/json"},
		{"Idempotency-Key", e.device + ":" + seq},
		{"X-Medic-Seq", seq},
		{"X-Medic-Epoch", strconv.FormatInt(epoch, 10)},
		{"X-Medic-Agent", c.o.Agent},
		{"X-Medic-Pool", c.o.Pool},
	}
	if c.pusher != nil {
		t, err := c.pusher.target(url)
		if err != nil {
			return 0, err
		}
		if t.direct {
			return c.pusher.do(ctx, t, e.payload, hdr)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(e.payload))
	if err != nil {
		return 0, err
	}
	for _, h := range hdr {
		req.Header.Set(h.name, h.value)
	}
	resp, err := c.o.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
