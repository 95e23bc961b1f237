package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(benchkit.TestMain(m)) }

// A short run of the whole harness: couchwatch must steer the saturated server away
// within the warm-up, every method must get answers, and the table must hold every row.
// Latencies are not asserted: the numbers come from a full run.
func TestLoadSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and couchwatch for ~15 s")
	}
	cfg := defaultConfig()
	cfg.Rate, cfg.Rounds = 50, 1
	cfg.Warmup, cfg.Duration = time.Second, 2*time.Second // MaxWarmup: the default
	cfg.SystemInterval, cfg.Sustain = 200*time.Millisecond, time.Second
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t) // couchwatch was built by TestMain, outside this deadline
	var out bytes.Buffer
	rows, err := run(ctx, cfg, &out, benchkit.TestLog{T: t})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	for _, r := range rows {
		if r.OK == 0 || r.P99 <= 0 {
			t.Errorf("%s: %d answers, p99 %s", r.Method, r.OK, r.P99)
		}
		if r.Method == methodCouchwatch && !r.reactedOK {
			t.Errorf("couchwatch did not steer the saturated server away")
		}
	}
	for _, want := range []string{"| couchwatch (leastconn + runtime steering)", "| balance leastconn ", "| balance roundrobin", "p99 vs leastconn"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestMedianRow(t *testing.T) {
	ms := time.Millisecond
	rs := []row{
		{Method: "x", P50: 5 * ms, P99: 90 * ms, OK: 10, Errors: 1, Throughput: 10, LoadedShare: 0.2},
		{Method: "x", P50: 7 * ms, P99: 30 * ms, OK: 20, Errors: 0, Throughput: 30, LoadedShare: 0.1},
		{Method: "x", P50: 6 * ms, P99: 60 * ms, OK: 30, Errors: 2, Throughput: 20, LoadedShare: 0.3},
	}
	got := medianRow(rs)
	if got.P50 != 6*ms || got.P99 != 60*ms || got.OK != 60 || got.Errors != 3 || got.Throughput != 20 || got.LoadedShare != 0.2 {
		t.Errorf("medianRow = %+v", got)
	}
	if len(got.RoundP99) != 3 || got.RoundP99[0] != 90*ms {
		t.Errorf("RoundP99 = %v", got.RoundP99)
	}
}
