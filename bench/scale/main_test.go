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

// A short run of the whole harness on a small cluster: couchwatch must see every node
// up, run reconcile passes, and take every stopped node out of HAProxy's rotation; the
// table must hold both sizes and the ratio row. Speed is not asserted.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and couchwatch for ~15 s")
	}
	cfg := defaultConfig()
	cfg.Sizes, cfg.Stop = []int{3, 12}, 2
	cfg.Window, cfg.Settle = 1500*time.Millisecond, 0
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
	if len(rows) != 2 || rows[0].Nodes != 3 || rows[1].Nodes != 12 {
		t.Fatalf("rows %+v, want 3 then 12 nodes", rows)
	}
	for _, r := range rows {
		if r.Passes == 0 || r.Usage.RSSMiB <= 0 || r.ReqRate <= 0 {
			t.Errorf("%d nodes: passes %v, RSS %v, requests/s %v", r.Nodes, r.Passes, r.Usage.RSSMiB, r.ReqRate)
		}
	}
	if rows[0].Stopped != 1 || rows[1].Stopped != 2 {
		t.Errorf("stopped %d and %d nodes, want 1 and 2", rows[0].Stopped, rows[1].Stopped)
	}
	if !strings.Contains(out.String(), "| ratio 12/3") {
		t.Errorf("output lacks the ratio row")
	}
	if !strings.Contains(out.String(), "CPU <= 1 %: ") || !strings.Contains(out.String(), "report only") {
		t.Errorf("output lacks the footprint judgement of the 3-node row or the report-only row")
	}
}
