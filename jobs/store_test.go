package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/runbooks"
)

func TestRunStore(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	ctx := context.Background()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := NewRunStore(c, StoreOptions{MaxRuns: 5, Now: func() time.Time { return base.Add(time.Hour) }})

	recs := []*runbooks.RunRecord{
		{ID: "r1", Runbook: "rb", Agent: "a1", Node: "n1", Outcome: runbooks.OutcomeRecovered},
		{ID: "r2", Runbook: "rb", Agent: "a2", Node: "n1", Outcome: runbooks.OutcomeHealthy},
		{ID: "r3", Runbook: "other", Agent: "a1", Node: "n2", Outcome: runbooks.OutcomeRecovered},
		{ID: "r4", Runbook: "rb", Agent: "a1", Node: "n2", Outcome: runbooks.OutcomeEscalated},
	}
	for i, r := range recs {
		r.Started = base.Add(time.Duration(i) * time.Minute)
		r.Steps = []runbooks.Step{}
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(rs []*runbooks.RunRecord) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		f    RunFilter
		want []string
	}{
		{RunFilter{}, []string{"r4", "r3", "r2", "r1"}},
		{RunFilter{Limit: 2}, []string{"r4", "r3"}},
		{RunFilter{Agent: "a1"}, []string{"r4", "r3", "r1"}},
		{RunFilter{Node: "n1"}, []string{"r2", "r1"}},
		{RunFilter{Runbook: "rb", Outcome: runbooks.OutcomeRecovered}, []string{"r1"}},
		{RunFilter{Outcome: runbooks.OutcomeFailed}, nil},
	} {
		got, err := s.List(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, ids(got)); d != "" {
			t.Errorf("List(%+v) -want +got:\n%s", tc.f, d)
		}
	}

	got, err := s.Get(ctx, "r3")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(recs[2], got); d != "" {
		t.Errorf("Get -want +got:\n%s", d)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}

	// Saving an ID again replaces the record: one record per run.
	again := *recs[0]
	again.Outcome = runbooks.OutcomeEscalated
	if err := s.Save(ctx, &again); err != nil {
		t.Fatal(err)
	}
	all, _ := s.List(ctx, RunFilter{})
	if len(all) != 4 {
		t.Fatalf("after re-save: %d records, want 4", len(all))
	}
	if r, _ := s.Get(ctx, "r1"); r.Outcome != runbooks.OutcomeEscalated {
		t.Errorf("re-saved outcome = %q", r.Outcome)
	}

	// Retention by count: MaxRuns=5 keeps the newest five, deletes the rest.
	for i := 5; i <= 8; i++ {
		r := &runbooks.RunRecord{ID: fmt.Sprintf("r%d", i), Started: base.Add(time.Duration(i) * time.Minute), Outcome: runbooks.OutcomeHealthy}
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	all, _ = s.List(ctx, RunFilter{})
	if d := cmp.Diff([]string{"r8", "r7", "r6", "r5", "r4"}, ids(all)); d != "" {
		t.Errorf("after trim -want +got:\n%s", d)
	}
	if _, err := s.Get(ctx, "r2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("trimmed record r2 still there: %v", err)
	}
	if n := c.ZCard(ctx, "medic:runs").Val(); n != 5 {
		t.Errorf("index size %d, want 5", n)
	}

	// Retention by age: the record's TTL.
	if ttl := c.PTTL(ctx, "medic:run:r8").Val(); ttl <= 0 || ttl > DefaultRunRetention {
		t.Errorf("record TTL %v, want (0, %v]", ttl, DefaultRunRetention)
	}
	short := NewRunStore(c, StoreOptions{Keys: Keys{Prefix: "x:"}, Retention: 100 * time.Millisecond})
	if err := short.Save(ctx, &runbooks.RunRecord{ID: "gone", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if rs, _ := short.List(ctx, RunFilter{}); len(rs) != 0 {
		t.Errorf("expired record listed: %v", ids(rs))
	}
	if n := c.ZCard(ctx, "x:runs").Val(); n != 0 {
		t.Errorf("expired index entry kept: %d", n)
	}
}

// Concurrent saves trim exactly the excess, never more.
func TestRunStoreConcurrentTrim(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client()
	s := NewRunStore(c, StoreOptions{MaxRuns: 20})
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			if err := s.Save(context.Background(), &runbooks.RunRecord{ID: fmt.Sprintf("c%02d", i), Started: time.Now()}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	all, err := s.List(context.Background(), RunFilter{})
	if err != nil || len(all) != 20 {
		t.Errorf("%d records after 60 concurrent saves with MaxRuns 20 (%v), want 20", len(all), err)
	}
	if n := len(c.Keys(context.Background(), "medic:run:*").Val()); n != 20 {
		t.Errorf("%d record keys, want 20", n)
	}
}
