package haproxy_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// answering is an upstream that answers every HTTP request with 200.
func answering(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A batch is safe at every prefix: with each command refused in turn by HAProxy
// itself, at least one server still serves once the pass is over. The pass brings n1
// back and takes n2 and n3 out; sent in name order in one batch (the old way), a
// refused "ready" for n1 left nothing in rotation.
func TestReconcileSafeAtEveryPrefix(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: []haproxytest.ServerSpec{
		{Name: "n1", Addr: answering(t)}, {Name: "n2", Addr: answering(t)}, {Name: "n3", Addr: answering(t)},
	}})
	d := haproxy.Desired{Servers: map[string]haproxy.Want{
		"n1": {State: haproxy.StateReady, Weight: -1, Verified: true, Reason: "up"},
		"n2": {State: haproxy.StateMaint, Weight: -1, Reason: "down"},
		"n3": {State: haproxy.StateMaint, Weight: -1, Reason: "down"},
	}}
	for refused := range 3 {
		for _, c := range []string{"set server couchdb-servers/n1 state maint", "set server couchdb-servers/n2 state ready",
			"set server couchdb-servers/n3 state ready"} {
			if out, err := p.Cmd(c); err != nil || strings.TrimSpace(out) != "" {
				t.Fatalf("%s: %q %v", c, out, err)
			}
		}
		var sent []string
		sock := p.RefusingSocket(t, func(i int, cmd string) bool { sent = append(sent, cmd); return i == refused })
		rt, err := haproxy.NewRuntime(haproxy.Config{Socket: sock}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := haproxy.NewReconciler(rt, haproxy.Budget{MinReady: 1}, nil, metricsFor(t, prometheus.NewRegistry()))
		if _, err := r.Reconcile(context.Background(), d); err == nil {
			t.Errorf("refused command %d: Reconcile returned no error", refused)
		}
		all, err := p.Servers(backend)
		if err != nil {
			t.Fatal(err)
		}
		serving := 0
		for _, s := range all {
			if s.AdminBits == 0 && s.OpState == 2 {
				serving++
			}
		}
		t.Logf("refused command %d of %q: %d serving", refused, sent, serving)
		if serving < 1 {
			t.Errorf("refused command %d (%q): no server serving: %+v", refused, sent, all)
		}
		if sent[0] != "set server couchdb-servers/n1 state ready" {
			t.Errorf("first command %q, want the ready first", sent[0])
		}
	}
}

// A server DOWN by HAProxy's own check does not count as serving: with it down and
// the two others wanting to drain (CouchDB nolb), one of them stays in.
func TestReconcileCountsOnlyServing(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: []haproxytest.ServerSpec{
		{Name: "n1", Addr: upstream(t), Extra: "check inter 100ms fall 1"}, // closes at once: DOWN
		{Name: "n2", Addr: answering(t)}, {Name: "n3", Addr: answering(t)},
	}, BackendExtra: []string{"option httpchk GET /"}})
	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return strings.HasPrefix(s.Status, "DOWN") }, 5*time.Second)
	rt := runtimeFor(t, p, false)
	m := metricsFor(t, prometheus.NewRegistry())
	r := haproxy.NewReconciler(rt, haproxy.Budget{MinReady: 1}, nil, m)
	d := haproxy.Desired{Servers: map[string]haproxy.Want{
		"n1": {Weight: -1},
		"n2": {State: haproxy.StateDrain, Weight: -1, Reason: "maintenance"},
		"n3": {State: haproxy.StateDrain, Weight: -1, Reason: "maintenance"},
	}}
	for range 3 {
		if _, err := r.Reconcile(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := p.Servers(backend)
	if all["n2"].AdminBits == 0 == (all["n3"].AdminBits == 0) {
		t.Fatalf("want exactly one of n2, n3 still ready: %+v", all)
	}
	// The refusal persists over three passes: one episode, counted once.
	if got := testutil.ToFloat64(m.Skipped.WithLabelValues("last_ready")); got != 1 {
		t.Errorf("skipped_total{last_ready} = %v over one episode, want 1", got)
	}
}

// A server taken out because its node is down has its sessions ended: a request
// already waiting on a node that never answers, behind CHT's "timeout server 100h",
// ends at once instead of after hours.
func TestReconcileEndsSessionsOfDownServer(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{
		Servers:  []haproxytest.ServerSpec{{Name: "n1", Addr: silent(t)}, {Name: "n2", Addr: answering(t)}},
		Balance:  "first",
		Timeouts: []string{"timeout connect 25m", "timeout client 100h", "timeout server 100h"},
	})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + p.FrontendAddr() + "/")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return true }, time.Second)
	waitConns(t, p, "n1")
	rt := runtimeFor(t, p, false)
	r := haproxy.NewReconciler(rt, haproxy.Budget{MinReady: 1}, nil, nil)
	res, err := r.Reconcile(context.Background(), haproxy.Desired{Servers: map[string]haproxy.Want{
		"n1": {State: haproxy.StateMaint, Weight: -1, Reason: "down", EndSessions: true},
		"n2": {Weight: -1},
	}})
	if err != nil || len(res.Commands) != 2 || res.Commands[1].Op != haproxy.OpShutdown {
		t.Fatalf("commands %+v, %v; want maint then shutdown sessions", res.Commands, err)
	}
	select {
	case <-errc: // ended: the client sees the connection close
	case <-time.After(10 * time.Second):
		t.Fatal("the request on the down server still waits 10 s after it was taken out")
	}
}

// silent accepts connections and never answers (a hung node).
func silent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = bufio.NewReader(c).ReadString(0); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// waitConns waits until HAProxy reports a session on server.
func waitConns(t *testing.T, p *haproxytest.Proc, server string) {
	t.Helper()
	rt := runtimeFor(t, p, false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		o, err := rt.State(context.Background(), backend)
		if err == nil && byName(o)[server].CurConns > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session on %s: %+v %v", server, o, err)
		}
		time.Sleep(10 * time.Millisecond) // an external process's state: poll
	}
}

// Every documented skip reason Plan owns is reachable and counted once per episode:
// not_verified here (last_ready above; budget and flapping come from the policy, in
// cmd/couchwatch's tests).
func TestReconcileNotVerifiedCountedOnce(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: []haproxytest.ServerSpec{{Name: "n1", Addr: answering(t)}, {Name: "n2", Addr: answering(t)}}})
	if _, err := p.Cmd("set server couchdb-servers/n1 state maint"); err != nil {
		t.Fatal(err)
	}
	m := metricsFor(t, prometheus.NewRegistry())
	r := haproxy.NewReconciler(runtimeFor(t, p, false), haproxy.Budget{}, nil, m)
	d := haproxy.Desired{Servers: map[string]haproxy.Want{"n1": {State: haproxy.StateReady, Weight: -1}, "n2": {Weight: -1}}}
	for range 3 {
		if _, err := r.Reconcile(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.Skipped.WithLabelValues("not_verified")); got != 1 {
		t.Errorf("skipped_total{not_verified} = %v over one episode, want 1", got)
	}
	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.AdminBits == 1 }, time.Second)
}

// An unwatched server in the backend does not count as serving: with the two watched
// nodes in CouchDB maintenance, one of their servers stays in.
func TestReconcileIgnoresUnwatchedServers(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: []haproxytest.ServerSpec{
		{Name: "n1", Addr: answering(t)}, {Name: "n2", Addr: answering(t)}, {Name: "stray", Addr: upstream(t)},
	}})
	r := haproxy.NewReconciler(runtimeFor(t, p, false), haproxy.Budget{MinReady: 1}, nil, nil)
	d := haproxy.Desired{Servers: map[string]haproxy.Want{
		"n1": {State: haproxy.StateDrain, Weight: -1, Reason: "maintenance"},
		"n2": {State: haproxy.StateDrain, Weight: -1, Reason: "maintenance"},
	}}
	if _, err := r.Reconcile(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	all, _ := p.Servers(backend)
	if all["n1"].AdminBits != 0 && all["n2"].AdminBits != 0 {
		t.Fatalf("both watched servers out, only the unwatched one left: %+v", all)
	}
}
