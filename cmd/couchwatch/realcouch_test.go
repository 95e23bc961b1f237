package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// Issue 9, on the faithful simulator behind a real HAProxy: each test asserts what
// HAProxy itself reports.

// With the checks-level verdicts of the auth-coupled hang (the silent node Down, the
// auth-blocked ones as they were), decide does not fail open: the silent node goes out
// alone and the others stay in.
func TestDecideAuthCoupledHang(t *testing.T) {
	silent := st("c1", checks.Down, 0)
	silent.Silent, silent.Reason = true, checks.ReasonSilent
	b2, b3 := st("c2", checks.Up, 0), st("c3", checks.Up, 0)
	for _, b := range []*checks.Status{&b2, &b3} {
		b.AuthBlocked, b.Verified, b.Reason = true, false, checks.ReasonAuthBlocked // last ok too old to verify
	}
	d, _ := decide(testPolicy(), "b", []checks.Status{silent, b2, b3}, threeServers, observed(nil, nil), newPolicyState(), time.Unix(1000, 0))
	if d.FailOpen {
		t.Fatal("failed open with auth-blocked nodes answering: the silent node would be handed back")
	}
	want := map[string]haproxy.AdminState{"s1": haproxy.StateMaint, "s2": haproxy.StateReady, "s3": haproxy.StateReady}
	for srv, state := range want {
		if got := d.Desired.Servers[srv].State; got != state {
			t.Errorf("%s: %s, want %s", srv, got, state)
		}
	}
	cmds, _ := haproxy.Plan(d.Desired, *observed(nil, nil), haproxy.Budget{MinReady: 1})
	for _, c := range cmds {
		if c.Server != "s1" && c.Op == haproxy.OpState {
			t.Errorf("command on an auth-blocked node's server: %s", c.Text)
		}
	}
}

// The start-up line prints durations as Go duration strings, not nanoseconds.
func TestStartupLogDurations(t *testing.T) {
	cfg, err := loadConfig(t.Context(), envOf("COUCHDB_SERVERS", "a", "COUCHWATCH_SLOWSTART", "30s",
		"COUCHWATCH_PROBE_INTERVAL", "500ms", "COUCHWATCH_PROBE_TIMEOUT", "500ms")) // set: defaults move
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("couchwatch starting", "config", cfg)
	for _, want := range []string{`"probe_interval":"500ms"`, `"probe_timeout":"500ms"`, `"slowstart":"30s"`, `"reconcile_interval":"1s"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("start-up line %s: no %s", buf.String(), want)
		}
	}
}

// Point 4: the node holding the admin's _users shard hangs. Every authenticated request
// on every node waits (until net_ticktime, a minute here); couchwatch takes out only the
// silent node, keeps it out, keeps the others in, and does not fail open.
func TestAuthCoupledHangThroughHAProxy(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, netTick: time.Minute})
	s.waitAll("ready", ready)
	shard := s.cluster.UsersShardNode()
	if shard != s.node(1) {
		t.Fatal("users shard not on node 1")
	}
	shard.Hang()
	t.Cleanup(shard.Resume)
	s.wait("couchdb-1", "maint (silent)", maint)
	knocks := func() float64 {
		return s.metric("couchwatch_probe_failures_total", "node", s.node(2).Addr(), "probe", "up", "reason", "timeout")
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.metric("couchwatch_node_auth_blocked", "node", s.node(2).Addr()) != 1 ||
		s.metric("couchwatch_node_auth_blocked", "node", s.node(3).Addr()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("nodes 2 and 3 never reported auth blocked")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// It holds, many probe rounds (timed-out probes, each followed by a knock) on: HAProxy keeps 2 and 3 in and 1 out, no fail open.
	start := knocks()
	for knocks() < start+10 {
		for _, srv := range []string{"couchdb-2", "couchdb-3"} {
			x, err := s.hap.PollServer(t.Context(), backend, srv, func(haproxytest.Server) bool { return true }, time.Second)
			if err != nil || !ready(x) {
				t.Fatalf("%s left rotation while auth blocked: %+v %v", srv, x, err)
			}
		}
		if x := s.wait("couchdb-1", "still maint", func(haproxytest.Server) bool { return true }); !maint(x) {
			t.Fatalf("couchdb-1 handed back while silent: %+v", x)
		}
		if s.metric("couchwatch_fail_open") != 0 {
			t.Fatal("failed open during the auth-coupled hang")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.metric("couchwatch_node_silent", "node", shard.Addr()) != 1 {
		t.Error("silent metric not set on the hung node")
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "node auth blocked") || !strings.Contains(logs, checks.ReasonAuthBlocked) {
		t.Error("no log line names the auth-coupled hang")
	}
	shard.Resume()
	s.waitAll("ready again", ready)
	if s.metric("couchwatch_node_auth_blocked", "node", s.node(2).Addr()) != 0 {
		t.Error("auth blocked still set after the resume")
	}
}

// Point 5: maintenance_mode = true still drains, and is reported as data unavailability;
// nolb drains without it.
func TestMaintenanceTrueIsDataUnavailableThroughHAProxy(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true})
	s.waitAll("ready", ready)
	if err := s.node(1).SetMaintenance("true"); err != nil {
		t.Fatal(err)
	}
	s.wait("couchdb-1", "out (drain, then maint)", func(x haproxytest.Server) bool { return !ready(x) })
	deadline := time.Now().Add(10 * time.Second)
	for s.metric("couchwatch_node_data_unavailable", "node", s.node(1).Addr()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("data unavailability not reported for maintenance_mode = true")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.node(1).SetMaintenance("nolb"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for s.metric("couchwatch_node_data_unavailable", "node", s.node(1).Addr()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("nolb reported as data unavailability")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if x := s.wait("couchdb-1", "still out under nolb", func(haproxytest.Server) bool { return true }); ready(x) {
		t.Fatalf("couchdb-1 back in under nolb: %+v", x)
	}
	_ = s.node(1).SetMaintenance("")
	s.waitAll("ready again", ready)
}

// Point 1: /_active_tasks is cluster-wide; only node 2's own tasks load node 2. (The
// saturation point is lowered to 4 so the recorded 6 tasks saturate.)
func TestOwnTasksOnlyThroughHAProxy(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_LOAD_ACTIVE_TASKS": "4", "COUCHWATCH_WEIGHT_STEP": "100"}})
	s.waitAll("weight 100", func(x haproxytest.Server) bool { return ready(x) && x.Weight == 100 })
	if err := s.node(2).SetActiveTasks("view_build"); err != nil {
		t.Fatal(err)
	}
	s.wait("couchdb-2", "drained for its own tasks", drain)
	for _, srv := range []string{"couchdb-1", "couchdb-3"} {
		if x := s.wait(srv, "ready", ready); x.Weight != 100 {
			t.Errorf("%s weight %d while only node 2 has tasks", srv, x.Weight)
		}
	}
	if got := s.metric("couchwatch_node_active_tasks", "node", s.node(1).Addr(), "type", "indexer"); got != 0 {
		t.Errorf("node 1 counts %v indexers of node 2", got)
	}
	_ = s.node(2).SetActiveTasks("idle")
	s.wait("couchdb-2", "ready again", ready)
}

// Point 2: after a load, the idle QuickJS processes (25-40) stay; against the node's own
// os_process_limit (1000, read from _config) the node is idle and keeps full weight.
func TestIdleJSProcessesKeepFullWeightThroughHAProxy(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_WEIGHT_STEP": "100"}})
	s.waitAll("weight 100", func(x haproxytest.Server) bool { return ready(x) && x.Weight == 100 })
	s.node(3).SetLoad(1)
	s.wait("couchdb-3", "steered for load", func(x haproxytest.Server) bool { return !ready(x) || x.Weight < 100 })
	s.node(3).SetLoad(0)
	s.wait("couchdb-3", "ready at weight 100", func(x haproxytest.Server) bool { return ready(x) && x.Weight == 100 })
	if got := s.metric("couchwatch_node_os_processes", "node", s.node(3).Addr()); got < 25 {
		t.Errorf("os_proc_count %v: the idle processes should still be there", got)
	}
	if got := s.metric("couchwatch_node_os_process_limit", "node", s.node(3).Addr()); got != 1000 {
		t.Errorf("os_process_limit %v, want the node's own 1000", got)
	}
}

// Point 7: a returning server's slow start writes no INFO line per weight step: the
// state changes are logged, the ramp is not.
func TestSlowStartLogsActionsNotRamps(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_SLOWSTART": "2s", "COUCHWATCH_WEIGHT_STEP": "100"}})
	s.waitAll("weight 100", func(x haproxytest.Server) bool { return ready(x) && x.Weight == 100 })
	s.node(2).Stop()
	s.wait("couchdb-2", "maint", maint)
	mark := len(s.logs.String())
	if err := s.node(2).Start(); err != nil {
		t.Fatal(err)
	}
	s.wait("couchdb-2", "ready, ramping", func(x haproxytest.Server) bool { return ready(x) && x.Weight < 100 })
	s.wait("couchdb-2", "ramped to 100", func(x haproxytest.Server) bool { return ready(x) && x.Weight == 100 })
	info, weights := 0, 0
	for _, line := range strings.Split(s.logs.String()[mark:], "\n") {
		if !strings.Contains(line, "server=couchdb-2") || !strings.Contains(line, `msg="haproxy command"`) {
			continue
		}
		if strings.Contains(line, "level=INFO") {
			info++
			if strings.Contains(line, " weight ") {
				t.Errorf("weight step at INFO: %s", line)
			}
		} else if strings.Contains(line, " weight ") {
			weights++
		}
	}
	if info == 0 || info > 2 || weights < 2 {
		t.Errorf("%d INFO command lines (want the ready, at most 2) and %d debug weight steps (want the ramp)", info, weights)
	}
}

// Point 3: under the spiky run_queue of a loaded CouchDB, the loaded server gets a steady
// low weight and the idle ones keep full weight (weights alone steer here: no load drain).
// Undamped (COUCHWATCH_LOAD_WINDOW=0s, COUCHWATCH_LOAD_SYSTEM_LATENCY=1m) it moves.
func TestSpikyLoadSteadyWeightThroughHAProxy(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_MAX_LOAD_DRAINS": "0",
		"COUCHWATCH_WEIGHT_STEP": "100", "COUCHWATCH_LOAD_WINDOW": "5s"}})
	s.waitAll("weight 100", func(x haproxytest.Server) bool { return ready(x) && x.Weight == 100 })
	s.node(2).SetLoad(1)
	t.Cleanup(func() { s.node(2).SetLoad(0) })
	s.wait("couchdb-2", "minimum weight", func(x haproxytest.Server) bool { return ready(x) && x.Weight == 10 })
	// 2 s of HAProxy's state, about 20 _system samples (every 100 ms, each drawing a new
	// run_queue): the weight does not move.
	changes, last := 0, 10
	for range 40 {
		all, err := s.hap.Servers(backend)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range all {
			switch {
			case x.Name == "couchdb-2" && x.Weight != last:
				changes++
				last = x.Weight
			case x.Name != "couchdb-2" && (!ready(x) || x.Weight != 100):
				t.Fatalf("idle %s: %+v", x.Name, x)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if changes > 0 {
		t.Errorf("the loaded server's weight changed %d times in 2 s of spiky load", changes)
	}
}
