package checks

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/couch/couchtest"
)

// testConfig probes fast, with deadlines a busy 2-core CI machine can keep: a learnt
// deadline under 250 ms fails healthy nodes there (a scheduling stall is not a hang).
func testConfig() Config {
	return Config{Interval: 50 * time.Millisecond, Timeout: time.Second, TimeoutMin: 250 * time.Millisecond, FastInterval: 20 * time.Millisecond,
		Rise: 2, Fall: 2, Hold: true, SystemInterval: 50 * time.Millisecond, SystemTimeout: 500 * time.Millisecond,
		MembershipInterval: 100 * time.Millisecond, Load: func() LoadConfig {
			l := defaultLoad()
			l.Sustain, l.Cooldown, l.Smoothing, l.Window = 0, 0, 1, time.Second
			return l
		}()}
}

type runnerEnv struct {
	cluster *couchtest.Cluster
	runner  *Runner
	reg     *prometheus.Registry
}

func startRunner(t *testing.T, cfg Config) *runnerEnv {
	t.Helper()
	return startRunnerOn(t, couchtest.NewClusterT(t, 3, couchtest.Options{NetTickTime: time.Second}), cfg)
}

func startRunnerOn(t *testing.T, cl *couchtest.Cluster, cfg Config) *runnerEnv {
	t.Helper()
	var nodes []*couch.Node
	for _, n := range cl.Nodes() {
		u, _ := url.Parse(n.URL())
		node, err := couch.NewNode(couch.Target{Name: n.Addr(), URL: u}, couch.Options{User: cl.User(), Password: cl.Password()})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	reg := prometheus.NewRegistry()
	r := NewRunner(cfg, nodes, slog.New(slog.NewTextHandler(io.Discard, nil)), mustMetrics(t, reg), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &runnerEnv{cluster: cl, runner: r, reg: reg}
}

// sample returns one gauge or counter sample, series as scrape writes it, from a real
// gather of the registry.
func (e *runnerEnv) sample(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := scrape(t, e.reg)[series]
	if !ok {
		t.Fatalf("no %s", series)
	}
	return v
}

// waitFor waits for cond on the snapshot, waking on verdict changes and re-checking on a
// short tick for fields that change without a verdict change.
func (e *runnerEnv) waitFor(t *testing.T, what string, cond func([]Status) bool) []Status {
	t.Helper()
	deadline := time.After(30 * time.Second) // a bound on failure only: a busy CI machine is slow
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s := e.runner.Snapshot()
		if cond(s) {
			return s
		}
		select {
		case <-deadline:
			t.Fatalf("never %s: %+v", what, s)
		case <-e.runner.Changed():
		case <-tick.C:
		}
	}
}

func TestRunnerVerdicts(t *testing.T) {
	e := startRunner(t, testConfig())
	n2 := e.cluster.Nodes()[1]
	all := func(v Verdict) func([]Status) bool {
		return func(s []Status) bool {
			for _, x := range s {
				if x.Verdict != v {
					return false
				}
			}
			return true
		}
	}
	is := func(i int, v Verdict) func([]Status) bool { return func(s []Status) bool { return s[i].Verdict == v } }
	s := e.waitFor(t, "all up", all(Up))
	if !s[0].Verified {
		t.Fatalf("up node not verified: %+v", s[0])
	}

	n2.Hang()
	s = e.waitFor(t, "node 2 down (hung)", is(1, Down))
	if s[1].Reason != ReasonSilent || !s[1].Silent || s[1].AuthBlocked || s[0].AuthBlocked {
		t.Errorf("hung node: reason %q silent %v; want silent, and no node auth blocked (node 2 holds no _users shard)", s[1].Reason, s[1].Silent)
	}
	n2.Resume()
	e.waitFor(t, "all up again", all(Up))

	if err := n2.SetMaintenance("nolb"); err != nil {
		t.Fatal(err)
	}
	s = e.waitFor(t, "node 2 drain", is(1, Drain))
	if s[1].Reason != "maintenance nolb" || s[1].Verified {
		t.Errorf("drain status %+v", s[1])
	}
	_ = n2.SetMaintenance("")
	e.waitFor(t, "all up again", all(Up))

	n2.SetLoad(1)
	s = e.waitFor(t, "node 2 degraded", is(1, Degraded))
	if (s[1].ScoreSignal != "run_queue" && s[1].ScoreSignal != "system_latency") || s[1].Score < 0.8 {
		t.Errorf("degraded status %+v", s[1])
	}
	n2.SetLoad(0)
	e.waitFor(t, "all up again", all(Up))

	if got := e.sample(t, `couchwatch_node_verdict{node="`+n2.Addr()+`",verdict="up"}`); got != 1 {
		t.Errorf("verdict{up} = %v", got)
	}
	if got := e.sample(t, `couchwatch_node_transitions_total{node="`+n2.Addr()+`",verdict="down"}`); got != 1 {
		t.Errorf("transitions{down} = %v, want 1", got)
	}
}

// A node missing from its peers' all_nodes while it answers /_up is a disagreement;
// the cluster's n is read from the config.
func TestRunnerMembership(t *testing.T) {
	e := startRunner(t, testConfig())
	e.cluster.SetMissingFromPeers(2, true)
	s := e.waitFor(t, "disagreement on node 3", func(s []Status) bool { return s[2].Disagreement })
	if len(s[2].MissingFrom) != 2 || s[0].Disagreement || s[1].Disagreement {
		t.Fatalf("statuses %+v", s)
	}
	if s[2].Verdict != Up {
		t.Errorf("disagreement changed the verdict to %s", s[2].Verdict)
	}
	if e.runner.ClusterN() != 1 { // CHT's n=1, the simulator's default
		t.Errorf("cluster n = %d, want 1", e.runner.ClusterN())
	}
	if got := e.sample(t, `couchwatch_node_shard_copies_after_loss{node="`+e.cluster.Nodes()[0].Addr()+`"}`); got != 0 {
		t.Errorf("shard copies after loss = %v, want 0", got)
	}
	e.cluster.SetMissingFromPeers(2, false)
	e.waitFor(t, "agreement", func(s []Status) bool { return !s[2].Disagreement })
}

// With the regular interval far away, a crash is still noticed: the held connection drops
// and the node is re-probed at once.
func TestRunnerHeldConnectionNoticesCrash(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = time.Hour
	cfg.SystemInterval, cfg.MembershipInterval = time.Hour, time.Hour
	e := startRunner(t, cfg)
	// Rise 2 needs a second probe: the fast interval covers the transition.
	e.waitFor(t, "all up", func(s []Status) bool { return s[0].Verdict == Up && s[1].Verdict == Up && s[2].Verdict == Up })
	e.cluster.Nodes()[0].Stop()
	s := e.waitFor(t, "node 1 down", func(s []Status) bool { return s[0].Verdict == Down })
	if s[0].Reason != string(couch.ReasonRefused) {
		t.Errorf("reason %q, want refused", s[0].Reason)
	}
}

// A hung node is down after Fall learnt deadlines of silence, the second on a connection
// of its own asked at once, not after Fall capped timeouts at the probe interval: here
// the cap and the interval are an hour, the deadline learnt from a fast node is the
// 50 ms floor.
func TestRunnerHangConfirmedAtOnceOnAFreshConnection(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = time.Hour
	cfg.SystemInterval, cfg.MembershipInterval = time.Hour, time.Hour
	e := startRunner(t, cfg)
	e.waitFor(t, "all up", func(s []Status) bool { return s[0].Verdict == Up && s[1].Verdict == Up && s[2].Verdict == Up })
	// Settle into the regular interval with a learnt deadline, then make the interval
	// long: the hang must be seen by the probe in flight or the next one, and confirmed
	// without waiting for another.
	e.waitFor(t, "deadline learnt", func(s []Status) bool { return s[0].Deadline == cfg.TimeoutMin })
	n := e.cluster.Nodes()[0]
	conns := n.Stats().Conns
	n.Hang()
	start := time.Now()
	s := e.waitFor(t, "node 1 down", func(s []Status) bool { return s[0].Verdict == Down })
	if took := time.Since(start); took > 30*time.Second { // loose for busy machines; without it: an hour
		t.Errorf("hang seen after %v: the learnt deadline was not used", took)
	}
	if s[0].Reason != ReasonSilent {
		t.Errorf("reason %q, want %q", s[0].Reason, ReasonSilent)
	}
	if got := n.Stats().Conns - conns; got < 1 {
		t.Errorf("%d new connections during the hang: the second opinion must use its own", got)
	}
	n.Resume()
}

// A node that suddenly answers slower than its learnt deadline, but within Fall of them,
// is not failed: the silent probe is not abandoned when the second opinion is sent, and
// its late answer counts and raises the deadline.
func TestRunnerLateAnswerIsNotAFailure(t *testing.T) {
	cfg := testConfig()
	cfg.TimeoutMin, cfg.Timeout = 100*time.Millisecond, time.Hour
	cfg.SystemInterval, cfg.MembershipInterval = time.Hour, time.Hour
	e := startRunner(t, cfg)
	e.waitFor(t, "deadline learnt", func(s []Status) bool { return s[0].Verdict == Up && s[0].Deadline == cfg.TimeoutMin })
	e.cluster.Nodes()[0].SetLatency(130 * time.Millisecond) // past the 100 ms deadline, within two
	s := e.waitFor(t, "slower deadline learnt", func(s []Status) bool { return s[0].Deadline >= 4*130*time.Millisecond })
	if s[0].Verdict != Up {
		t.Fatalf("verdict %s (%s), want up", s[0].Verdict, s[0].Reason)
	}
	if got := e.sample(t, `couchwatch_node_transitions_total{node="`+e.cluster.Nodes()[0].Addr()+`",verdict="down"}`); got != 0 {
		t.Fatalf("went down %v times: a late answer was taken for a failure", got)
	}
}

// A node (or a proxy in front of it) that closes every idle connection at once must not
// be probed in a tight loop: an early close buys at most one extra probe per interval.
func TestRunnerIdleClosesDoNotSpin(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	srv.Config.IdleTimeout = time.Millisecond
	srv.Start()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	node, err := couch.NewNode(couch.Target{Name: "idle-closer", URL: u}, couch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Interval, cfg.FastInterval = 100*time.Millisecond, 50*time.Millisecond
	cfg.SystemInterval, cfg.MembershipInterval = time.Hour, time.Hour
	r := NewRunner(cfg, []*couch.Node{node}, slog.New(slog.NewTextHandler(io.Discard, nil)), mustMetrics(t, prometheus.NewRegistry()), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.Run(ctx)
	// Scheduled probes: at most 2 s / 50 ms = 40 (the fast interval covers the rise);
	// the early ones add at most one per 100 ms interval: 20 more.
	if got := requests.Load(); got > 60 {
		t.Fatalf("%d probes in 2 s against a node that closes idle connections at once: spinning", got)
	} else if got < 10 {
		t.Fatalf("%d probes in 2 s: want the regular schedule", got)
	}
	if s := r.Snapshot()[0]; s.Verdict != Up {
		t.Fatalf("verdict %s (%s), want up: an idle close is not a failure", s.Verdict, s.Reason)
	}
}
