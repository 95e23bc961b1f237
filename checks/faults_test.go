package checks

import (
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch/couchtest"
)

// /_active_tasks is cluster-wide (DESIGN.md §5): only the tasks of the node itself
// count. The recorded reply holds 6 tasks of couchdb1.
func TestOwnTasks(t *testing.T) {
	tasks := readTasks(t, "active_tasks_view_build.json")
	if got := ownTasks(tasks, "couchdb1@127.0.0.1"); len(got) != 6 {
		t.Fatalf("own tasks of couchdb1: %d, want 6", len(got))
	}
	if got := ownTasks(tasks, "couchdb2@127.0.0.1"); got == nil || len(got) != 0 {
		t.Fatalf("own tasks of couchdb2: %v, want none (known)", got)
	}
	if got := ownTasks(tasks, ""); got != nil {
		t.Fatalf("own tasks with no name yet: %v, want unknown", got)
	}
}

// Idle QuickJS processes stay after a load (25-40); against CHT's os_process_limit of
// 1000 they are no load, while COUCHWATCH_JS_PROCESS_LIMIT still overrides.
func TestJSProcessesAgainstTheNodesLimit(t *testing.T) {
	cfg := defaultLoad()
	idle := Signals{HaveSystem: true, JSProcs: 32, JSLimit: 1000}
	if score, _ := cfg.Score(idle); score > 0.05 {
		t.Fatalf("32 idle JS processes of 1000: score %.3f, want ~0", score)
	}
	idle.JSLimit = 0
	if score, _ := cfg.Score(idle); score != 0.32 {
		t.Fatalf("limit unknown: score %.3f, want 32/100 (CouchDB's default)", score)
	}
	cfg.JSProcs = 40
	idle.JSLimit = 1000
	if score, signal := cfg.Score(idle); score != 0.8 || signal != "os_proc_count" {
		t.Fatalf("override 40: score %.3f (%s), want 0.8", score, signal)
	}
}

// A loaded CouchDB's run_queue is spiky (median ~1, p90 ~30, max ~110): damped, the
// score of a loaded node stays saturated between spikes, an idle node's stays 0.
func TestDampedRunQueue(t *testing.T) {
	cfg := defaultLoad()
	spiky := []float64{1, 0, 30, 1, 2, 0, 5, 1, 0, 110, 1, 3, 0, 1, 28, 2, 0, 1, 4, 0, 1, 45, 0, 1}
	t0 := time.Unix(0, 0)
	var dm, idle damper
	rawBelow, dampedBelow := 0, 0
	for i, rq := range spiky {
		now := t0.Add(time.Duration(i) * 5 * time.Second)
		sig := Signals{HaveSystem: true, RunQueue: rq, RunQueueNow: rq}
		if raw, _ := cfg.Score(sig); raw < cfg.High {
			rawBelow++
		}
		// The loaded node's _system takes 100-700 ms; the idle node's a few.
		d := dm.damp(cfg, sig, time.Duration(100+25*i)*time.Millisecond, now)
		if score, _ := cfg.Score(d); i >= 2 && score < cfg.High {
			dampedBelow++
			t.Errorf("sample %d (run_queue %v): damped score %.2f, want >= %v", i, rq, score, cfg.High)
		}
		if d.RunQueueNow != rq {
			t.Fatalf("undamped sample lost: %v", d.RunQueueNow)
		}
		q := idle.damp(cfg, Signals{HaveSystem: true}, 3*time.Millisecond, now)
		if score, _ := cfg.Score(q); score > 0.05 {
			t.Fatalf("idle node: score %.2f", score)
		}
	}
	if rawBelow < len(spiky)/2 {
		t.Fatalf("the raw samples are below high only %d times: the sequence is not spiky", rawBelow)
	}
	// The window forgets: a minute after the last spike the peak is gone.
	var w peakWindow
	w.add(time.Minute, t0, 110)
	if got := w.add(time.Minute, t0.Add(59*time.Second), 1); got != 110 {
		t.Fatalf("peak within the window: %v", got)
	}
	if got := w.add(time.Minute, t0.Add(61*time.Second), 2); got != 2 {
		t.Fatalf("peak after the window: %v", got)
	}
	if got := w.add(0, t0.Add(62*time.Second), 1); got != 1 {
		t.Fatalf("window 0 keeps only the last sample: %v", got)
	}
}

// On the faithful simulator: each node counts only its own tasks, a hung peer (which
// blocks /_active_tasks on every node) never stops a healthy node's samples or changes
// its verdict, and the node's own os_process_limit is read.
func TestRunnerOwnTasksAndLimit(t *testing.T) {
	cl := couchtest.NewClusterT(t, 3, couchtest.Options{NetTickTime: time.Minute})
	e := startRunnerOn(t, cl, testConfig())
	n1, n2, n3 := cl.Nodes()[0], cl.Nodes()[1], cl.Nodes()[2]
	if err := n2.SetActiveTasks("view_build"); err != nil {
		t.Fatal(err)
	}
	s := e.waitFor(t, "tasks attributed", func(s []Status) bool {
		return s[1].Signals.HaveTasks && s[1].Signals.Tasks["indexer"] == 5 && s[0].Signals.HaveTasks && s[2].Signals.HaveTasks
	})
	if s[0].Signals.Tasks["indexer"] != 0 || s[2].Signals.Tasks["indexer"] != 0 {
		t.Fatalf("peers count node 2's tasks: %v %v", s[0].Signals.Tasks, s[2].Signals.Tasks)
	}
	e.waitFor(t, "os_process_limit read", func(s []Status) bool { return s[0].Signals.JSLimit == 1000 })
	if got := e.sample(t, `couchwatch_node_os_process_limit{node="`+n1.Addr()+`"}`); got != 1000 {
		t.Fatalf("os_process_limit metric %v", got)
	}
	n1.SetLoad(1)
	n1.SetLoad(0)
	e.waitFor(t, "idle JS processes scored ~0", func(s []Status) bool {
		return s[0].Signals.JSProcs >= 25 && s[0].ScoreKnown && s[0].Score < 0.1 && s[0].Verdict == Up
	})

	// Node 3 hangs (no _users shard on it): every node's /_active_tasks blocks until
	// net_ticktime (a minute), node 1 keeps sampling and stays up.
	count := func(probe string) float64 {
		return e.sample(t, `couchwatch_probe_duration_seconds_count{node="`+n1.Addr()+`",probe="`+probe+`"}`)
	}
	n3.Hang()
	e.waitFor(t, "node 3 down", func(s []Status) bool { return s[2].Verdict == Down })
	sys, tasks := count(ProbeSystem), count(ProbeActiveTasks)
	e.waitFor(t, "node 1 sampled 5 more times", func([]Status) bool { return count(ProbeSystem) >= sys+5 })
	if s := e.runner.Snapshot(); s[0].Verdict != Up || s[1].Verdict != Up {
		t.Fatalf("healthy nodes while a peer hangs: %s %s", s[0].Verdict, s[1].Verdict)
	}
	if got := count(ProbeActiveTasks); got > tasks+2 {
		t.Fatalf("node 1's /_active_tasks answered %v times while a peer hangs: the simulator does not block it", got-tasks)
	}
	// Node 3 is down within two learnt deadlines, sooner than node 1's /_active_tasks
	// times out (COUCHWATCH_SYSTEM_TIMEOUT): wait for that timeout.
	e.waitFor(t, "node 1's /_active_tasks timed out", func([]Status) bool {
		return scrape(t, e.reg)[`couchwatch_probe_failures_total{node="`+n1.Addr()+`",probe="active_tasks",reason="timeout"}`] >= 1
	})
	n3.Resume()
}

// The auth-coupled hang (DESIGN.md §5) on the faithful simulator: the node holding the
// admin's _users shard hangs; it is Silent and Down, the others are AuthBlocked and keep
// their verdict. A stopped node does not couple.
func TestRunnerAuthCoupledHang(t *testing.T) {
	cl := couchtest.NewClusterT(t, 3, couchtest.Options{NetTickTime: time.Minute})
	e := startRunnerOn(t, cl, testConfig())
	all := func(v Verdict) func([]Status) bool {
		return func(s []Status) bool { return s[0].Verdict == v && s[1].Verdict == v && s[2].Verdict == v }
	}
	e.waitFor(t, "all up", all(Up))
	shard := cl.UsersShardNode()
	if shard != cl.Nodes()[0] {
		t.Fatal("users shard not on node 1")
	}
	shard.Hang()
	s := e.waitFor(t, "node 1 silent and down, the others auth blocked", func(s []Status) bool {
		return s[0].Verdict == Down && s[0].Silent && s[1].AuthBlocked && s[2].AuthBlocked
	})
	for _, st := range s[1:] {
		if st.Verdict != Up || !strings.Contains(st.Reason, ReasonAuthBlocked) || st.Silent {
			t.Fatalf("auth-blocked node: %+v", st)
		}
	}
	if s[0].AuthBlocked || s[0].Reason != ReasonSilent {
		t.Fatalf("silent node: %+v", s[0])
	}
	// It holds: many probe rounds later the others are still up.
	before := e.sample(t, `couchwatch_probe_duration_seconds_count{node="`+cl.Nodes()[1].Addr()+`",probe="knock"}`)
	e.waitFor(t, "ten more knocks", func(s []Status) bool {
		return e.sample(t, `couchwatch_probe_duration_seconds_count{node="`+cl.Nodes()[1].Addr()+`",probe="knock"}`) >= before+10
	})
	s = e.runner.Snapshot()
	if s[1].Verdict != Up || s[2].Verdict != Up || s[0].Verdict != Down {
		t.Fatalf("verdicts changed while auth blocked: %s %s %s", s[0].Verdict, s[1].Verdict, s[2].Verdict)
	}
	if got := e.sample(t, `couchwatch_node_auth_blocked{node="`+cl.Nodes()[2].Addr()+`"}`); got != 1 {
		t.Fatalf("auth_blocked metric %v", got)
	}
	if got := e.sample(t, `couchwatch_node_silent{node="`+shard.Addr()+`"}`); got != 1 {
		t.Fatalf("silent metric %v", got)
	}
	shard.Resume()
	e.waitFor(t, "all up, flags cleared", func(s []Status) bool {
		return all(Up)(s) && !s[0].Silent && !s[1].AuthBlocked && !s[2].AuthBlocked
	})
	shard.Stop()
	s = e.waitFor(t, "node 1 down", func(s []Status) bool { return s[0].Verdict == Down })
	if s[1].AuthBlocked || s[2].AuthBlocked || s[0].Silent || s[1].Verdict != Up {
		t.Fatalf("a stopped node coupled: %+v", s)
	}
}

// maintenance_mode = true drains and is reported as data unavailability under n=1;
// nolb drains without it.
func TestRunnerMaintenanceTrueIsDataUnavailable(t *testing.T) {
	e := startRunner(t, testConfig())
	n1 := e.cluster.Nodes()[0]
	e.waitFor(t, "n read", func([]Status) bool { return e.runner.ClusterN() == 1 })
	if err := n1.SetMaintenance("true"); err != nil {
		t.Fatal(err)
	}
	s := e.waitFor(t, "node 1 drain, data unavailable", func(s []Status) bool { return s[0].Verdict == Drain && s[0].DataUnavailable })
	if !strings.Contains(s[0].Reason, ReasonMaintenanceTrue) {
		t.Fatalf("reason %q", s[0].Reason)
	}
	if got := e.sample(t, `couchwatch_node_data_unavailable{node="`+n1.Addr()+`"}`); got != 1 {
		t.Fatalf("data_unavailable metric %v", got)
	}
	if err := n1.SetMaintenance("nolb"); err != nil {
		t.Fatal(err)
	}
	s = e.waitFor(t, "nolb: drain, data available", func(s []Status) bool { return s[0].Verdict == Drain && !s[0].DataUnavailable })
	if s[0].Reason != "maintenance nolb" {
		t.Fatalf("nolb reason %q", s[0].Reason)
	}
}
