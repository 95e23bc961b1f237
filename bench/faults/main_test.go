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

// A short run of every scenario: the tables hold every row, couchwatch keeps the hung
// _users-shard node out and only it. Timings are not asserted: they come from a full run.
func TestFaultsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and couchwatch for ~40 s")
	}
	cfg := defaultConfig()
	cfg.Tick, cfg.After, cfg.Spiky, cfg.Rate = 3*time.Second, time.Second, 8*time.Second, 10
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	secs, err := run(testenv.Context(t), cfg, &out, benchkit.TestLog{T: t})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(secs) != len(scenarios()) {
		t.Fatalf("%d sections, want %d", len(secs), len(scenarios()))
	}
	auth := secs[0].Table.Rows
	if len(auth) != 2 {
		t.Fatalf("auth-coupled hang: %d rows, want 2", len(auth))
	}
	cw := auth[0]
	if !strings.HasPrefix(cw[0], "couchwatch") || !strings.HasPrefix(cw[1], "couchdb-1 @") || strings.Contains(cw[1], "couchdb-2") ||
		strings.Contains(cw[1], "couchdb-3") || cw[3] != "yes" || cw[7] != "0 times" {
		t.Errorf("couchwatch row %q: want couchdb-1 out alone, still out at the end, no fail open", cw)
	}
	if spiky := secs[1].Table.Rows; len(spiky) != 6 {
		t.Errorf("spiky load: %d rows, want 6", len(spiky))
	}
}

func TestValidate(t *testing.T) {
	cfg := defaultConfig()
	cfg.Scenarios = []string{"nope"}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown scenario: %v", err)
	}
}
