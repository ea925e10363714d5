package stage

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// BenchmarkNotifyToCommit measures a registry notification to the pushed commit with
// many other stages configured (100; KROPIPE_BENCH_LARGE=1: 1,000), reporting p50 and p99.
// "notified" is ReconcileKicked (the notified repository's stages only); "whole-pass" is
// the same push followed by a pass over every stage, as before targeted passes. Between
// pushes, untimed, the engine does its idle housekeeping as the run loops do.
func BenchmarkNotifyToCommit(b *testing.B) {
	n := 100
	if os.Getenv("KROPIPE_BENCH_LARGE") != "" {
		n = 1000
	}
	for _, mode := range []string{"notified", "whole-pass"} {
		b.Run(fmt.Sprintf("%s/stages=%d", mode, n), func(b *testing.B) {
			f, e := manyStages(b, n)
			ctx := context.Background()
			image := f.reg.image("team/svc000")
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// Idle between pushes: the run loop's housekeeping (clone compaction) runs
				// then, never inside a notification's pass.
				e.Housekeep(ctx)
				tag := fmt.Sprintf("1.2.%d", 3+i)
				f.reg.push(b, "team/svc000", tag)
				b.StartTimer()
				start := time.Now()
				var err error
				if mode == "notified" {
					e.Notify(image)
					<-e.Kicks()
					err = e.ReconcileKicked(ctx)
				} else {
					err = e.Reconcile(ctx)
				}
				took = append(took, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if st, _ := e.StatusOf("develop-svc000"); st.CurrentTag != tag {
					b.Fatalf("develop-svc000 at %s after the pass, want %s", st.CurrentTag, tag)
				}
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
