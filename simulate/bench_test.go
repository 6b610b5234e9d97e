package simulate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// BenchmarkRunbookTests1000 is `medic test` on 1,000 tests (the library's
// own tests, copied into enough files), loading included: the goal is at
// most 5 s for 1,000 tests on this machine. Each iteration runs them all.
func BenchmarkRunbookTests1000(b *testing.B) {
	dir := b.TempDir()
	lib, err := filepath.Abs("../runbooks/library")
	if err != nil {
		b.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(lib, "*.test.hcl"))
	var srcs [][]byte
	perRound := 0
	testRE := regexp.MustCompile(`(?m)^test "`)
	for _, n := range names {
		src, err := os.ReadFile(n)
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, append([]byte(fmt.Sprintf("config = %q\n", lib)), src...))
		perRound += len(testRE.FindAll(src, -1))
	}
	total := 0
	for i := 0; total < 1000; i++ {
		for j, src := range srcs {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%03d-%d.test.hcl", i, j)), src, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		total += perRound
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		s, diags := LoadSuite([]string{dir}, nil)
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		rep := s.Run(context.Background())
		if rep.Failed != 0 || rep.Passed != total {
			b.Fatalf("passed %d failed %d of %d", rep.Passed, rep.Failed, total)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(total), "tests")
	b.ReportMetric(per.Seconds()*1000/float64(total), "s/1000tests")
	b.ReportMetric(5, "goal-s/1000tests")
}
