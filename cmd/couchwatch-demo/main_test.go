package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The demo's scripted tour runs end to end: simulated nodes, a real HAProxy, the real
// couchwatch binary; every step is checked in HAProxy's own state by the tour itself.
func TestScriptedTour(t *testing.T) {
	dir := t.TempDir()
	cw := filepath.Join(dir, "couchwatch")
	demo := filepath.Join(dir, "couchwatch-demo")
	for bin, pkg := range map[string]string{cw: "../couchwatch", demo: "."} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(demo, "-couchwatch", cw, "-script", "-listen", addr, "-duration", "3m")
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo tour failed: %v\n%s", err, out)
	}
	for _, want := range []string{"crash node 2", "reload HAProxy", "tour done", "MAINT"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
