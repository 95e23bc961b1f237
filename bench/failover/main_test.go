package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(benchkit.TestMain(m)) }

// The re-implemented CHT agent answers "up" only while every cluster node is in the
// first node's all_nodes, the same answer for every server, and "down" when the first
// node cannot be asked.
func TestCHTAgent(t *testing.T) {
	c := couchtest.NewClusterT(t, 3, couchtest.Options{})
	a := newCHTAgent(c.Nodes()[0].Addr(), c.User(), c.Password())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	ask := func() string {
		t.Helper()
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatalf("read agent reply: %v", err)
		}
		return strings.TrimSpace(line)
	}
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"healthy", func() {}, "up"},
		{"second node crashed", func() { c.Nodes()[1].Stop() }, "down"},
		{"second node back", func() {
			if err := c.Nodes()[1].Start(); err != nil {
				t.Fatal(err)
			}
		}, "up"},
		{"missing from peers", func() { c.SetMissingFromPeers(2, true) }, "down"},
		{"visible again", func() { c.SetMissingFromPeers(2, false) }, "up"},
		{"first node crashed", func() { c.Nodes()[0].Stop() }, "down"},
	}
	for _, s := range steps {
		s.do()
		if got := ask(); got != s.want {
			t.Fatalf("%s: agent said %q, want %q", s.name, got, s.want)
		}
	}
}

// A short run of the whole harness: couchwatch at its defaults and HAProxy's tuned
// checks, every fault, and the idle measurement. Every crash and hang must be noticed,
// a node that only slows down or is loaded must never be marked down by couchwatch (and
// the slow one is by HAProxy's tuned checks, whose 250 ms check timeout it passes), and
// the tables must hold every row. Speed is not asserted: the numbers come from a full run.
func TestFailoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and couchwatch for ~40 s")
	}
	cfg := defaultConfig()
	cfg.Methods = []string{"cw-default", tunedKey}
	cfg.Reps = 1
	cfg.Pre, cfg.Window, cfg.Tail = 300*time.Millisecond, time.Second, 200*time.Millisecond
	// cfg.MaxDetect stays at its default: a busy machine may be slow to notice, and the
	// test asserts that every fault is noticed, not how fast.
	cfg.SlowWindow, cfg.RampOver = 5*time.Second, 4*time.Second
	cfg.Idle = time.Second
	cfg.ClientTimeout = 30 * time.Second
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t) // couchwatch was built by TestMain, outside this deadline
	var out bytes.Buffer
	rep, err := run(ctx, cfg, &out, benchkit.TestLog{T: t})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if want := len(cfg.Methods) * len(allFaults); len(rep.cells) != want {
		t.Fatalf("%d cells, want %d", len(rep.cells), want)
	}
	for _, c := range rep.cells {
		switch {
		case !slowFault(c.Fault) && !c.Detected:
			t.Errorf("%s / %s: the faulted server never left rotation", c.Method, c.Fault)
		case slowFault(c.Fault) && c.Method == "cw-default" && c.MarkedDown:
			t.Errorf("%s / %s: couchwatch marked an answering node down after %v", c.Method, c.Fault, c.DownAfter)
		case c.Fault == faultRamp && c.Method == tunedKey && !c.MarkedDown:
			t.Errorf("%s / %s: HAProxy's 250 ms check timeout never marked a %v node down", c.Method, c.Fault, cfg.RampTo)
		}
		if len(c.OthersOut) != 0 {
			t.Errorf("%s / %s: healthy servers left rotation too: %v", c.Method, c.Fault, c.OthersOut)
		}
		if c.Sent == 0 {
			t.Errorf("%s / %s: no load was sent", c.Method, c.Fault)
		}
	}
	rows := tableRows(out.String())
	for _, m := range []string{"couchwatch (defaults)", "HAProxy httpchk, tuned"} {
		for _, f := range allFaults {
			if !rows[[2]string{m, f}] {
				t.Errorf("no table row %q / %q", m, f)
			}
		}
	}
	for _, want := range []string{
		"couchwatch (defaults, runtime API, 3 nodes)",
		"HAProxy worker steered by couchwatch (no checks)",
		"HAProxy worker running the tuned httpchk (3 servers)",
	} {
		if !rows[[2]string{want, ""}] {
			t.Errorf("no table row %q", want)
		}
	}
	if len(rep.idle) != 3 || rep.idle[0].Usage.RSSMiB <= 0 || rep.idle[0].ReqRate <= 0 {
		t.Errorf("idle rows %+v: want 3, couchwatch with an RSS and probe requests", rep.idle)
	}
}

// tableRows returns the first two cells of every Markdown table row (the second is ""
// when it does not name a fault).
func tableRows(text string) map[[2]string]bool {
	rows := map[[2]string]bool{}
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) < 2 {
			continue
		}
		first, second := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		if !slices.Contains(allFaults, second) {
			second = ""
		}
		rows[[2]string{first, second}] = true
	}
	return rows
}
