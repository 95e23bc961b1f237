package main

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/internal/testenv"
)

// The binaries the tour runs, built once by TestMain, outside every test's deadline.
var couchwatchBin, demoBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, func(dir string) (err error) {
		if couchwatchBin, err = testenv.GoBuild(dir, "./cmd/couchwatch", nil); err != nil {
			return err
		}
		demoBin, err = testenv.GoBuild(dir, "./cmd/couchwatch-demo", nil)
		return err
	}))
}

// The demo's scripted tour runs end to end: simulated nodes, a real HAProxy, the real
// couchwatch binary; every step is checked in HAProxy's own state by the tour itself.
func TestScriptedTour(t *testing.T) {
	testenv.Require(t, "haproxy")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(testenv.Context(t), demoBin, "-couchwatch", couchwatchBin, "-script", "-listen", addr, "-duration", "3m")
	cmd.Stdin = nil
	// At the deadline, stop the demo as a user would, so it stops HAProxy and couchwatch.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo tour failed: %v\n%s", err, out)
	}
	for _, want := range []string{"crash node 2", "reload HAProxy", "tour done", "MAINT", "drained: no sessions left on couchdb-3", "back in rotation", "timeline (newest first", "blast radius"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
