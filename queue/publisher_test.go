package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPublishAssignsSequencesAndBuffersWithoutAgent(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "p1")
	ctx := context.Background()
	type step struct {
		device, key string
		wantSeq     int64
		wantDup     bool
	}
	steps := []step{
		{"a", "", 1, false},
		{"a", "", 2, false},
		{"b", "kb1", 1, false},
		{"b", "kb1", 1, true}, // producer retry
		{"a", "ka3", 3, false},
		{"b", "", 2, false},
	}
	var ids = map[string]string{}
	for i, s := range steps {
		res, err := h.pub.Publish(ctx, "p1", s.device, []byte(`{"n":1}`), s.key)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.Seq != s.wantSeq || res.Duplicate != s.wantDup {
			t.Errorf("step %d: got seq %d dup %v, want %d %v", i, res.Seq, res.Duplicate, s.wantSeq, s.wantDup)
		}
		if s.key != "" {
			if prev, ok := ids[s.key]; ok && prev != res.ID {
				t.Errorf("step %d: retry got id %s, first publish %s", i, res.ID, prev)
			}
			ids[s.key] = res.ID
		}
	}
	// No agent registered: everything waits in the buffer, nothing lost.
	st := h.status()
	if diff := cmp.Diff(Status{Pool: "p1", Status: "waiting", Buffer: 5, Agents: []AgentStatus{}}, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	for _, bad := range []struct {
		pool, device string
		payload      string
	}{
		{"p1", "", `{}`},
		{"p1", "a", `not json`},
		{"p{1}", "a", `{}`},
		{"", "a", `{}`},
	} {
		if _, err := h.pub.Publish(ctx, bad.pool, bad.device, []byte(bad.payload), ""); !errors.Is(err, ErrBadInput) {
			t.Errorf("Publish(%q,%q,%q) = %v, want ErrBadInput", bad.pool, bad.device, bad.payload, err)
		}
	}
}

func TestPublishActivatesHealthyAgentWhenBufferEmpty(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "p2")
	ctx := context.Background()
	// A registered but expired agent is not chosen.
	if err := heartbeatScript.Run(ctx, client, []string{h.keys.Agents()}, "old", 1, "h").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	for _, id := range []string{"b", "a"} {
		if err := heartbeatScript.Run(ctx, client, []string{h.keys.Agents()}, id, 60000, "host-"+id).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.pub.Publish(ctx, "p2", "d", []byte(`1`), ""); err != nil {
		t.Fatal(err)
	}
	st := h.status()
	got := []any{st.Agent, st.Host, st.Epoch, st.Lock, st.Backlog, st.Buffer, st.Status}
	want := []any{"a", "host-a", int64(1), false, int64(1), int64(0), "active"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	n, _ := client.XLen(ctx, h.keys.In("a")).Result()
	if n != 1 {
		t.Errorf("stream of a has %d entries, want 1", n)
	}
}

func TestPublishBatchKeepsOrderAndIdempotency(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "batch")
	ctx := context.Background()
	batch := []Config{
		{Device: "a", Payload: []byte(`1`), IdempotencyKey: "i1"},
		{Device: "b", Payload: []byte(`2`)},
		{Device: "a", Payload: []byte(`3`), IdempotencyKey: "i3"},
		{Device: "a", Payload: []byte(`4`)},
	}
	res, err := h.pub.PublishBatch(ctx, "batch", batch)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, r := range res {
		seqs = append(seqs, r.Seq)
	}
	if diff := cmp.Diff([]int64{1, 1, 2, 3}, seqs); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
	// Retrying the keyed configs returns the first results.
	again, err := h.pub.PublishBatch(ctx, "batch", []Config{batch[0], batch[2]})
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Duplicate || again[0].ID != res[0].ID || !again[1].Duplicate || again[1].Seq != 2 {
		t.Errorf("retry = %+v, want duplicates of %+v and %+v", again, res[0], res[2])
	}
	// The buffer holds them in publish order.
	msgs, _ := client.XRange(ctx, h.keys.Buf(), "-", "+").Result()
	var got []string
	for _, m := range msgs {
		got = append(got, m.Values["device"].(string)+":"+m.Values["seq"].(string)+"="+m.Values["payload"].(string))
	}
	if diff := cmp.Diff([]string{"a:1=1", "b:1=2", "a:2=3", "a:3=4"}, got); diff != "" {
		t.Errorf("buffer (-want +got):\n%s", diff)
	}
	if _, err := h.pub.PublishBatch(ctx, "batch", []Config{{Device: "a", Payload: []byte(`{`)}}); !errors.Is(err, ErrBadInput) {
		t.Errorf("bad payload: %v", err)
	}
}

// TestPublishBatchSameAsPublish: a batch spanning several script calls,
// with a key repeated inside it, ends in the state one Publish per config
// would leave: same seqs, same stream contents in order, duplicates
// reported.
func TestPublishBatchSameAsPublish(t *testing.T) {
	_, client := standalone(t, false)
	ctx := context.Background()
	var configs []Config
	for i := 0; i < 2*publishBatch+37; i++ {
		c := Config{Device: fmt.Sprintf("d%d", i%7), Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if i%5 == 0 {
			c.IdempotencyKey = fmt.Sprintf("k%d", i%40) // repeats inside the batch
		}
		configs = append(configs, c)
	}
	one := newHarness(t, client, "", "one")
	var want []Published
	for _, c := range configs {
		r, err := one.pub.Publish(ctx, "one", c.Device, c.Payload, c.IdempotencyKey)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	batch := newHarness(t, client, "", "batch2")
	got, err := batch.pub.PublishBatch(ctx, "batch2", configs)
	if err != nil {
		t.Fatal(err)
	}
	strip := func(ps []Published) (out []string) {
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%d %v", p.Seq, p.Duplicate))
		}
		return out
	}
	if diff := cmp.Diff(strip(want), strip(got)); diff != "" {
		t.Errorf("batch results (-one by one +batch):\n%s", diff)
	}
	stream := func(k Keys) (out []string) {
		msgs, _ := client.XRange(ctx, k.Buf(), "-", "+").Result()
		for _, m := range msgs {
			out = append(out, fmt.Sprint(m.Values["device"], m.Values["seq"], m.Values["payload"]))
		}
		return out
	}
	if diff := cmp.Diff(stream(one.keys), stream(batch.keys)); diff != "" {
		t.Errorf("buffer (-one by one +batch):\n%s", diff)
	}
}
