package queue

import (
	"context"
	"fmt"
	"time"
)

// stepItem is one fence check (seq 0) or acknowledgement.
type stepItem struct {
	device string
	seq    int64
	id     string
}

// stepReq is a device worker's items for the stepper, kept together and in
// order in one script call.
type stepReq struct {
	items []stepItem
	res   chan stepRes
}

type stepRes struct {
	duty  bool
	acks  []int64
	acked []bool
	at    time.Time // when the answer arrived
	err   error
}

// stepper runs the device workers' fence checks and acknowledgements,
// several per script call: while one call is in flight the next requests
// queue up and go together (group commit), which keeps Redis round trips
// well below one per config when many devices are busy.
func (r *epochRun) stepper() {
	const maxItems = 1024
	c := r.c
	keys := []string{c.k.Ctl(), c.k.Ack(), c.k.In(c.o.Agent), c.k.Dev(), c.k.Retrying(), c.k.Blocked()}
	var batch []*stepReq
	var args []any
	for req := range r.steps {
		batch = append(batch[:0], req)
		n := len(req.items)
	more:
		for n < maxItems {
			select {
			case q, ok := <-r.steps:
				if !ok {
					break more
				}
				batch = append(batch, q)
				n += len(q.items)
			default:
				break more
			}
		}
		args = append(args[:0], c.o.Agent, r.epoch)
		for _, q := range batch {
			for _, it := range q.items {
				args = append(args, it.device, it.seq, it.id)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := stepScript.Run(ctx, c.o.Client, keys, args...).Slice()
		cancel()
		answered := time.Now()
		if err == nil && len(res) != 1+2*n {
			err = fmt.Errorf("step script returned %d values for %d items", len(res), n)
		}
		at := 1
		for _, q := range batch {
			if err != nil {
				q.res <- stepRes{err: err}
				continue
			}
			out := stepRes{duty: asInt(res[0]) == 1, acks: make([]int64, len(q.items)), acked: make([]bool, len(q.items)), at: answered}
			for i := range q.items {
				out.acks[i], out.acked[i] = asInt(res[at]), asInt(res[at+1]) == 1
				at += 2
			}
			q.res <- out
		}
		clear(batch)
	}
}

// stepAsync hands items to the stepper and returns where the answer will
// be, or nil when the epoch ended first.
func (r *epochRun) stepAsync(items []stepItem) chan stepRes {
	q := &stepReq{items: items, res: make(chan stepRes, 1)}
	select {
	case r.steps <- q:
		return q.res
	case <-r.ctx.Done():
		return nil
	}
}

func (r *epochRun) stepItems(ctx context.Context, items []stepItem) (stepRes, error) {
	q := &stepReq{items: items, res: make(chan stepRes, 1)}
	select {
	case r.steps <- q:
	case <-ctx.Done():
		return stepRes{}, ctx.Err()
	}
	select {
	case res := <-q.res:
		return res, res.err
	case <-ctx.Done():
		return stepRes{}, ctx.Err()
	}
}

func (r *epochRun) step(ctx context.Context, device string, seq int64, id string) (duty bool, ack int64, acked bool, err error) {
	res, err := r.stepItems(ctx, []stepItem{{device: device, seq: seq, id: id}})
	if err != nil {
		return false, 0, false, err
	}
	return res.duty, res.acks[0], res.acked[0], nil
}
