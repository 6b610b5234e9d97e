package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
)

// BenchmarkFleetRead is one reading of 10,000 node snapshots of 4 agents
// each from a real redis-server (what a request costs when the shared
// reading is older than MaxAge), then the first page of the view.
func BenchmarkFleetRead(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	c := srv.Client()
	fx := writeFleet(b, c, 10000, 4, time.Now())
	f := NewFleet(FleetOptions{Redis: c, MaxAge: -1})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := f.Query(ctx, FleetQuery{})
		if err != nil {
			b.Fatal(err)
		}
		if p.Counts != fx.counts {
			b.Fatalf("counts %+v, want %+v", p.Counts, fx.counts)
		}
	}
}
