package haproxytest

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartCmdReload(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	p := StartT(t, Options{Servers: []ServerSpec{
		{Name: "n1", Addr: up.Addr().String()},
		{Name: "n2", Addr: "127.0.0.1:1", Extra: "check inter 100ms fall 1 rise 1"},
	}})
	if _, err := p.Cmd("set server couchdb-servers/n1 state drain"); err != nil {
		t.Fatal(err)
	}
	s := p.WaitServer(t, "couchdb-servers", "n1", func(s Server) bool { return s.AdminBits == 8 }, 2*time.Second)
	if s.Status != "DRAIN" || s.Port == 0 {
		t.Fatalf("n1 = %+v, want DRAIN with a port", s)
	}
	p.WaitServer(t, "couchdb-servers", "n2", func(s Server) bool { return s.Status == "DOWN" }, 5*time.Second)
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	// A reload wipes runtime changes.
	p.WaitServer(t, "couchdb-servers", "n1", func(s Server) bool { return s.AdminBits == 0 }, 2*time.Second)
	out, err := p.Cmd("show info")
	if err != nil || !strings.Contains(out, "Pid:") {
		t.Fatalf("show info after reload = %q, %v", out, err)
	}
	if !strings.Contains(p.Config(), "balance leastconn") {
		t.Fatalf("config lacks balance leastconn:\n%s", p.Config())
	}
}

func TestStartClose(t *testing.T) {
	p, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Cmd("show info"); err == nil {
		t.Fatal("admin socket still answers after Close")
	}
}
