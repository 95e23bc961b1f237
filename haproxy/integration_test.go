package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/haproxy/haproxytest"
	"github.com/medic/couchwatch/internal/testenv"
)

const backend = "couchdb-servers"

// upstream is a TCP listener standing in for a CouchDB node (accepts, never answers).
func upstream(t testing.TB) string {
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
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func threeServers(t testing.TB) []haproxytest.ServerSpec {
	return []haproxytest.ServerSpec{
		{Name: "n1", Addr: upstream(t)},
		{Name: "n2", Addr: upstream(t), Extra: "check inter 1s"},
		{Name: "n3", Addr: upstream(t), Extra: "track n2"},
	}
}

func runtimeFor(t testing.TB, p *haproxytest.Proc, dry bool) *haproxy.Runtime {
	t.Helper()
	rt, err := haproxy.NewRuntime(haproxy.Config{Socket: p.Socket(), DryRun: dry}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func byName(o haproxy.Observed) map[string]haproxy.Server {
	m := map[string]haproxy.Server{}
	for _, s := range o.Servers {
		m[s.Name] = s
	}
	return m
}

func TestStateAgainstHAProxy(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: threeServers(t)})
	rt := runtimeFor(t, p, false)
	ctx := context.Background()
	if _, err := p.Cmd("set server couchdb-servers/n2 state drain;set server couchdb-servers/n1 weight 7"); err != nil {
		t.Fatal(err)
	}
	obs, err := rt.State(ctx, backend)
	if err != nil {
		t.Fatal(err)
	}
	got := byName(obs)
	if len(obs.Servers) != 3 || obs.Servers[0].Name != "n1" {
		t.Fatalf("servers = %+v, want n1 n2 n3 in order", obs.Servers)
	}
	if s := got["n1"]; s.Admin != haproxy.StateReady || s.UWeight != 7 || s.Weight != 7 || s.IWeight != 1 || !s.OpUp {
		t.Errorf("n1 = %+v, want ready, weight 7, iweight 1, up", s)
	}
	if s := got["n2"]; s.Admin != haproxy.StateDrain || s.AdminBits != 8 || s.Status != "DRAIN" {
		t.Errorf("n2 = %+v, want drain (8)", s)
	}
	// n3 tracks n2: admin state 16 (drain via track) is decimal, so drain, not maint.
	if s := got["n3"]; s.Admin != haproxy.StateDrain || s.AdminBits != 16 {
		t.Errorf("n3 = %+v, want drain via track (16)", s)
	}
	want, err := p.Servers(backend)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		g := got[name]
		if g.Addr != w.Addr || g.Port != w.Port || g.AdminBits != w.AdminBits || g.UWeight != w.UWeight {
			t.Errorf("%s: Runtime says %+v, haproxytest says %+v", name, g, w)
		}
	}

	_, err = rt.State(ctx, "nope")
	if !errors.Is(err, haproxy.ErrNoBackend) {
		t.Fatalf("State(nope) err = %v, want ErrNoBackend", err)
	}
}

func TestApplyErrorRepliesSurface(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: threeServers(t)})
	rt := runtimeFor(t, p, false)
	ctx := context.Background()
	cmds := []haproxy.Command{
		{Server: "n1", Op: "state", Text: "set server couchdb-servers/n1 state drain"},
		{Server: "nx", Op: "state", Text: "set server couchdb-servers/nx state drain"},
		{Server: "n1", Op: "addr", Text: "set server couchdb-servers/n1 addr bogus port 5984"},
		{Server: "n2", Op: "addr", Text: "set server couchdb-servers/n2 addr 127.0.0.2 port 5985"},
		{Server: "n2", Op: "weight", Text: "set server couchdb-servers/n2 weight 200"},
	}
	err := rt.Apply(ctx, cmds)
	var ce *haproxy.CommandError
	if !errors.As(err, &ce) || !errors.Is(err, haproxy.ErrReply) {
		t.Fatalf("Apply err = %v, want CommandErrors", err)
	}
	msg := err.Error()
	for _, want := range []string{"set server couchdb-servers/nx state drain", "No such server", "addr bogus", "Invalid addr"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	for _, ok := range []string{"n1 state drain:", "127.0.0.2", "weight 200"} {
		if strings.Contains(msg, ok) {
			t.Errorf("error %q blames an accepted command (%s)", msg, ok)
		}
	}
	// The accepted commands did take effect.
	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.AdminBits == 8 }, time.Second)
	s := p.WaitServer(t, backend, "n2", func(s haproxytest.Server) bool { return s.Addr == "127.0.0.2" }, time.Second)
	if s.Port != 5985 || s.UWeight != 200 {
		t.Fatalf("n2 = %+v, want port 5985 weight 200", s)
	}
}

func metricsFor(t testing.TB, reg prometheus.Registerer) *haproxy.Metrics {
	t.Helper()
	m, err := haproxy.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReconcileRepairsReloadInOnePass(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: threeServers(t)[:2]})
	rt := runtimeFor(t, p, false)
	reg := prometheus.NewPedanticRegistry()
	m := metricsFor(t, reg)
	var logs testenv.LogBuffer
	r := haproxy.NewReconciler(rt, haproxy.Budget{MinReady: 1}, slog.New(slog.NewJSONHandler(&logs, nil)), m)
	ctx := context.Background()
	d := haproxy.Desired{Backend: backend, Servers: map[string]haproxy.Want{
		"n1": {State: haproxy.StateMaint, Weight: -1, Reason: "down", Detail: "refused"},
		"n2": {State: haproxy.StateReady, Weight: 50, Verified: true, Reason: "up"},
	}}
	res, err := r.Reconcile(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Commands) != 2 {
		t.Fatalf("first pass commands = %+v, want maint n1 and weight n2", res.Commands)
	}
	check := func() {
		t.Helper()
		p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.AdminBits == 1 }, time.Second)
		p.WaitServer(t, backend, "n2", func(s haproxytest.Server) bool { return s.UWeight == 50 }, time.Second)
	}
	check()
	if res, err := r.Reconcile(ctx, d); err != nil || len(res.Commands) != 0 {
		t.Fatalf("steady pass: %+v, %v; want no command", res.Commands, err)
	}
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.AdminBits == 0 }, time.Second)
	res, err = r.Reconcile(ctx, d)
	if err != nil || len(res.Commands) != 2 {
		t.Fatalf("after reload: %+v, %v; want the 2 commands again", res.Commands, err)
	}
	check()

	if got := testutil.ToFloat64(m.Commands.WithLabelValues("state", "ok")); got != 2 {
		t.Errorf("state ok commands = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Drains.WithLabelValues("n1", "down")); got != 2 {
		t.Errorf("drains n1 down = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Up); got != 1 {
		t.Errorf("haproxy_up = %v", got)
	}
	if got := testutil.ToFloat64(m.ServerAdminState.WithLabelValues("n1", "maint")); got != 0 {
		t.Errorf("n1 maint gauge = %v, want 0: the last pass observed it ready after reload", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP couchwatch_haproxy_server_weight Weight HAProxy reports for the server.
# TYPE couchwatch_haproxy_server_weight gauge
couchwatch_haproxy_server_weight{server="n1"} 1
couchwatch_haproxy_server_weight{server="n2"} 1
`), "couchwatch_haproxy_server_weight"); err != nil {
		t.Error(err)
	}
	for _, want := range []string{`"server":"n1"`, `"reason":"down"`, `"cmd":"set server couchdb-servers/n1 state maint"`, `"backend":"couchdb-servers"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}

	// HAProxy gone: an error, haproxy_up 0, no panic.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, d); err == nil {
		t.Fatal("Reconcile with HAProxy gone: want an error")
	}
	if got := testutil.ToFloat64(m.Up); got != 0 {
		t.Errorf("haproxy_up = %v after failure, want 0", got)
	}
	if got := testutil.ToFloat64(m.ReconcileErrors); got != 1 {
		t.Errorf("reconcile errors = %v, want 1", got)
	}
}

func TestReconcileSkipsAndErrors(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: threeServers(t)[:2]})
	rt := runtimeFor(t, p, false)
	m := metricsFor(t, prometheus.NewRegistry())
	r := haproxy.NewReconciler(rt, haproxy.Budget{}, nil, m)
	res, err := r.Reconcile(context.Background(), haproxy.Desired{Servers: map[string]haproxy.Want{
		"n1": {State: haproxy.StateMaint, Weight: -1, Reason: "down"},
		"n2": {State: haproxy.StateMaint, Weight: -1, Reason: "down", Addr: "not-an-ip"},
	}})
	if err == nil || !errors.Is(err, haproxy.ErrReply) || !strings.Contains(err.Error(), "addr not-an-ip") {
		t.Fatalf("err = %v, want the invalid addr reply", err)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Server != "n2" || res.Skipped[0].Reason != haproxy.SkipLastReady {
		t.Fatalf("skipped = %+v, want n2 last ready", res.Skipped)
	}
	if got := testutil.ToFloat64(m.Skipped.WithLabelValues("last_ready")); got != 1 {
		t.Errorf("skipped last_ready = %v", got)
	}
	if got := testutil.ToFloat64(m.Commands.WithLabelValues("addr", "error")); got != 1 {
		t.Errorf("addr errors = %v", got)
	}
	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.AdminBits == 1 }, time.Second)
	p.WaitServer(t, backend, "n2", func(s haproxytest.Server) bool { return s.AdminBits == 0 }, time.Second)
}

func TestReconcileDryRunSendsNothing(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: threeServers(t)[:2]})
	rt := runtimeFor(t, p, true)
	m := metricsFor(t, prometheus.NewRegistry())
	var logs testenv.LogBuffer
	r := haproxy.NewReconciler(rt, haproxy.Budget{}, slog.New(slog.NewTextHandler(&logs, nil)), m)
	res, err := r.Reconcile(context.Background(), haproxy.Desired{Servers: map[string]haproxy.Want{
		"n1": {State: haproxy.StateDrain, Weight: 3, Reason: "saturated"},
		"n2": {Weight: -1}, // watched, serving: the drain is allowed
	}})
	if err != nil || len(res.Commands) != 2 {
		t.Fatalf("dry run: %+v, %v", res.Commands, err)
	}
	all, err := p.Servers(backend)
	if err != nil {
		t.Fatal(err)
	}
	if s := all["n1"]; s.AdminBits != 0 || s.UWeight != 1 {
		t.Fatalf("dry run changed HAProxy: %+v", s)
	}
	if got := testutil.ToFloat64(m.Commands.WithLabelValues("state", "dry_run")); got != 1 {
		t.Errorf("dry_run state = %v", got)
	}
	if !strings.Contains(logs.String(), "cmd=\"set server couchdb-servers/n1 state drain\"") {
		t.Errorf("dry run did not log the command:\n%s", logs.String())
	}
}

func TestAgentServerWithRealHAProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var mu sync.Mutex
	cluster := haproxy.AgentReply{Words: []string{"up", "ready"}}
	per := map[string]haproxy.AgentReply{
		"n2": {Words: []string{"up", "ready"}},
	}
	seen := map[string]bool{}
	respond := func(server string) haproxy.AgentReply {
		mu.Lock()
		defer mu.Unlock()
		seen[server] = true
		if server == "" {
			return cluster
		}
		return per[server]
	}
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	m := metricsFor(t, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- haproxy.NewAgentServer(respond, nil, m).Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	agent := fmt.Sprintf("check inter 500ms agent-check agent-inter 100ms agent-addr 127.0.0.1 agent-port %s", port)
	specs := threeServers(t)[:2]
	specs[0].Extra = agent                        // CHT style: nothing sent
	specs[1].Extra = agent + ` agent-send "n2\n"` // per server
	p := haproxytest.StartT(t, haproxytest.Options{Servers: specs})

	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.Status == "UP" }, 3*time.Second)
	set(func() { cluster = haproxy.AgentReply{Words: []string{"down"}, Comment: "node1 refused"} })
	s := p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return strings.HasPrefix(s.Status, "DOWN") && s.OpState == 0 }, 3*time.Second)
	if !strings.Contains(s.Status, "agent") {
		t.Errorf("n1 status %q: want it down by the agent", s.Status)
	}
	set(func() { cluster = haproxy.AgentReply{Words: []string{"up", "ready"}} })
	p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.Status == "UP" }, 3*time.Second)

	set(func() { per["n2"] = haproxy.AgentReply{Words: []string{"drain"}} })
	p.WaitServer(t, backend, "n2", func(s haproxytest.Server) bool { return strings.HasPrefix(s.Status, "DRAIN") }, 3*time.Second)
	set(func() { per["n2"] = haproxy.AgentReply{Words: []string{"ready", "up"}} })
	p.WaitServer(t, backend, "n2", func(s haproxytest.Server) bool { return s.Status == "UP" }, 3*time.Second)
	// The cluster-wide answer never touched n2, and n2's never touched n1.
	mu.Lock()
	if !seen[""] || !seen["n2"] || len(seen) != 2 {
		t.Errorf("servers asked about: %v, want \"\" and n2", seen)
	}
	mu.Unlock()
	if got := testutil.ToFloat64(m.AgentReplies.WithLabelValues("down")); got < 1 {
		t.Errorf("down replies = %v", got)
	}
	if got := testutil.ToFloat64(m.AgentReplies.WithLabelValues("drain")); got < 1 {
		t.Errorf("drain replies = %v", got)
	}
}
