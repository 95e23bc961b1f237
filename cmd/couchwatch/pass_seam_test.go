package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/haproxy"
)

// fakeVerdicts is a verdictSource with fixed statuses.
type fakeVerdicts struct {
	statuses []checks.Status
	changed  chan struct{}
}

func (f *fakeVerdicts) Snapshot() []checks.Status { return f.statuses }
func (f *fakeVerdicts) Changed() <-chan struct{}  { return f.changed }

// planReconciler is a reconciler over a fixed observed state: it plans as the real one
// does and records the commands, without a HAProxy.
type planReconciler struct {
	obs  haproxy.Observed
	err  error
	sent []haproxy.Command
}

func (p *planReconciler) ReconcileWith(_ context.Context, decide func(haproxy.Observed) haproxy.Desired) (haproxy.Result, error) {
	if p.err != nil {
		return haproxy.Result{}, p.err
	}
	cmds, skips := haproxy.Plan(decide(p.obs), p.obs, haproxy.Budget{MinReady: 1})
	p.sent = append(p.sent, cmds...)
	return haproxy.Result{Observed: p.obs, Commands: cmds, Skipped: skips}, nil
}

func seamApp(t *testing.T, statuses []checks.Status, rec reconciler) *app {
	t.Helper()
	var targets []couch.Target
	for _, st := range statuses {
		targets = append(targets, target(t, st.Node, "http://"+st.Node+":5984"))
	}
	cfg := Config{Policy: testPolicy(), OnNodeLoss: "serve"}
	cfg.HAProxy.Backend = "b"
	a := &app{cfg: cfg, log: slog.New(slog.DiscardHandler), targets: targets, explMap: threeServers,
		clk: clocktesting.NewFakeClock(time.Unix(1000, 0)), verdicts: &fakeVerdicts{statuses: statuses},
		hosts: newHostCache(nil, nil), rec: rec,
		failOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "f"}), failOpenTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "t"}),
		budgetExhausted: prometheus.NewGauge(prometheus.GaugeOpts{Name: "b"})}
	a.timeline, a.history = newTimeline(timelineSize), newHistory(historySpan, historyStep(time.Second))
	a.last.pstate = newPolicyState()
	return a
}

// pass, table-tested through its seams: what it sends and what the agent then answers.
func TestPassSeam(t *testing.T) {
	down, up := checks.Down, checks.Up
	tests := []struct {
		name      string
		verdicts  []checks.Verdict
		admin     map[string]haproxy.AdminState
		recErr    error
		wantCmds  []string
		wantAgent map[string]string // server -> first agent word (agent mode)
		failOpen  bool
	}{
		{name: "one down: maint, sessions ended", verdicts: []checks.Verdict{up, down, up},
			wantCmds:  []string{"set server b/s2 state maint", "shutdown sessions server b/s2"},
			wantAgent: map[string]string{"s1": "up", "s2": "down", "s3": "up"}},
		{name: "start-up, one dead, others unknown: out, no fail open", verdicts: []checks.Verdict{checks.Unknown, down, checks.Unknown},
			wantCmds: []string{"set server b/s2 state maint", "shutdown sessions server b/s2"}},
		{name: "restart with the dead one already in maint: nothing, never ready", verdicts: []checks.Verdict{checks.Unknown, down, checks.Unknown},
			admin: map[string]haproxy.AdminState{"s2": "maint"}},
		{name: "every node down: fail open, nothing taken out", verdicts: []checks.Verdict{down, down, down},
			admin: map[string]haproxy.AdminState{"s2": "maint"}, failOpen: true,
			wantCmds: []string{"set server b/s2 state ready"}},
		{name: "runtime api down: error, nothing sent", verdicts: []checks.Verdict{up, down, up}, recErr: errors.New("dial: refused")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var statuses []checks.Status
			for i, v := range tt.verdicts {
				statuses = append(statuses, st("c"+string(rune('1'+i)), v, 0))
			}
			rec := &planReconciler{obs: *observed(tt.admin, nil), err: tt.recErr}
			a := seamApp(t, statuses, rec)
			err := a.pass(context.Background(), true)
			if (err != nil) != (tt.recErr != nil) {
				t.Fatalf("pass err = %v", err)
			}
			var got []string
			for _, c := range rec.sent {
				if c.Op != haproxy.OpWeight {
					got = append(got, c.Text)
				}
			}
			if len(got) != len(tt.wantCmds) {
				t.Fatalf("sent %q, want %q", got, tt.wantCmds)
			}
			for i := range got {
				if got[i] != tt.wantCmds[i] {
					t.Fatalf("sent %q, want %q", got, tt.wantCmds)
				}
			}
			if a.last.dec.FailOpen != tt.failOpen {
				t.Errorf("fail open %v, want %v", a.last.dec.FailOpen, tt.failOpen)
			}
			if tt.wantAgent == nil {
				return
			}
			agent := seamApp(t, statuses, nil) // agent mode: per-server answers
			if err := agent.pass(context.Background(), false); err != nil {
				t.Fatal(err)
			}
			for srv, word := range tt.wantAgent {
				if r := agent.agentReply(srv); r.Words[0] != word {
					t.Errorf("agent reply for %s = %v, want %s", srv, r.Words, word)
				}
			}
		})
	}
}
