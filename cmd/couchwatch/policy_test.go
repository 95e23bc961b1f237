package main

import (
	"testing"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

func testPolicy() PolicyConfig {
	return PolicyConfig{Weights: true, WeightMax: 100, WeightMin: 10, WeightStep: 20, SlowStart: 30 * time.Second,
		MaxLoadDrains: 1, MinReady: 1, FlapWindow: time.Minute, FlapHold: time.Second, FlapHoldMax: 8 * time.Second,
		loadLow: 0.5, loadHigh: 0.8}
}

func st(node string, v checks.Verdict, score float64) checks.Status {
	return checks.Status{Node: node, Verdict: v, Verified: v == checks.Up || v == checks.Degraded, Score: score, ScoreKnown: true, Reason: v.String()}
}

var threeServers = map[string]string{"c1": "s1", "c2": "s2", "c3": "s3"}

func observed(admin map[string]haproxy.AdminState, conns map[string]int) *haproxy.Observed {
	o := &haproxy.Observed{Backend: "b"}
	for _, n := range []string{"s1", "s2", "s3"} {
		a := admin[n]
		if a == "" {
			a = haproxy.StateReady
		}
		o.Servers = append(o.Servers, haproxy.Server{Name: n, Admin: a, OpUp: true, OpState: 2, Weight: 1, UWeight: 1, IWeight: 1, CurConns: conns[n]})
	}
	return o
}

func TestDecideStates(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name       string
		statuses   []checks.Status
		obs        *haproxy.Observed
		want       map[string]haproxy.AdminState // absent = no Want
		wantReason map[string]string
		failOpen   bool
		exhausted  bool
	}{
		{name: "all up",
			statuses: []checks.Status{st("c1", checks.Up, 0), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
			obs:      observed(nil, nil),
			want:     map[string]haproxy.AdminState{"s1": "ready", "s2": "ready", "s3": "ready"}},
		{name: "unknown never acts",
			statuses: []checks.Status{st("c1", checks.Unknown, 0), st("c2", checks.Up, 0), st("c3", checks.Down, 0)},
			obs:      observed(nil, nil),
			want:     map[string]haproxy.AdminState{"s1": "", "s2": "ready", "s3": "maint"}},
		{name: "down goes to maint",
			statuses:   []checks.Status{st("c1", checks.Up, 0), st("c2", checks.Down, 0), st("c3", checks.Up, 0)},
			obs:        observed(nil, nil),
			want:       map[string]haproxy.AdminState{"s1": "ready", "s2": "maint", "s3": "ready"},
			wantReason: map[string]string{"s2": "down"}},
		{name: "maintenance drains while connections remain",
			statuses:   []checks.Status{st("c1", checks.Drain, 0), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
			obs:        observed(map[string]haproxy.AdminState{"s1": "drain"}, map[string]int{"s1": 3}),
			want:       map[string]haproxy.AdminState{"s1": "drain", "s2": "ready", "s3": "ready"},
			wantReason: map[string]string{"s1": "maintenance"}},
		{name: "maintenance goes to maint once drained",
			statuses: []checks.Status{st("c1", checks.Drain, 0), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
			obs:      observed(map[string]haproxy.AdminState{"s1": "drain"}, nil),
			want:     map[string]haproxy.AdminState{"s1": "maint", "s2": "ready", "s3": "ready"}},
		{name: "maintenance from ready drains first even when idle",
			statuses: []checks.Status{st("c1", checks.Drain, 0), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
			obs:      observed(nil, nil),
			want:     map[string]haproxy.AdminState{"s1": "drain", "s2": "ready", "s3": "ready"}},
		{name: "two saturated, only one drained (budget)",
			statuses:   []checks.Status{st("c1", checks.Degraded, 0.9), st("c2", checks.Degraded, 0.95), st("c3", checks.Up, 0)},
			obs:        observed(nil, nil),
			want:       map[string]haproxy.AdminState{"s1": "ready", "s2": "drain", "s3": "ready"},
			wantReason: map[string]string{"s1": "saturated", "s2": "saturated"},
			exhausted:  true},
		{name: "every node down: fail open",
			statuses: []checks.Status{st("c1", checks.Down, 0), st("c2", checks.Down, 0), st("c3", checks.Down, 0)},
			obs:      observed(map[string]haproxy.AdminState{"s1": "maint", "s2": "maint"}, nil),
			want:     map[string]haproxy.AdminState{"s1": "ready", "s2": "ready", "s3": "ready"},
			failOpen: true},
		{name: "down and maintenance, none up: no fail open (a node answers; Plan keeps the last ready)",
			statuses: []checks.Status{st("c1", checks.Down, 0), st("c2", checks.Drain, 0), st("c3", checks.Down, 0)},
			obs:      observed(nil, nil),
			want:     map[string]haproxy.AdminState{"s1": "maint", "s2": "drain", "s3": "maint"}},
		{name: "all unknown at start: nothing, every server watched",
			statuses: []checks.Status{st("c1", checks.Unknown, 0), st("c2", checks.Unknown, 0), st("c3", checks.Unknown, 0)},
			obs:      observed(nil, nil),
			want:     map[string]haproxy.AdminState{"s1": "", "s2": "", "s3": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := decide(testPolicy(), "b", tt.statuses, threeServers, tt.obs, newPolicyState(), now)
			if d.FailOpen != tt.failOpen || d.Desired.FailOpen != tt.failOpen {
				t.Errorf("fail open %v/%v, want %v", d.FailOpen, d.Desired.FailOpen, tt.failOpen)
			}
			if d.BudgetExhausted != tt.exhausted {
				t.Errorf("budget exhausted %v, want %v", d.BudgetExhausted, tt.exhausted)
			}
			if len(d.Desired.Servers) != len(tt.want) {
				t.Errorf("wants %v, want %v", d.Desired.Servers, tt.want)
			}
			for srv, state := range tt.want {
				w, ok := d.Desired.Servers[srv]
				if !ok || w.State != state {
					t.Errorf("%s: want state %q, got %+v", srv, state, w)
				}
				if r, ok := tt.wantReason[srv]; ok && w.Reason != r {
					t.Errorf("%s: reason %q, want %q", srv, w.Reason, r)
				}
			}
		})
	}
}

// The load-drain budget sticks to the node it drained: a second node that becomes a bit
// hotter does not make the drain hop back and forth.
func TestDecideBudgetSticks(t *testing.T) {
	now := time.Unix(1000, 0)
	obs := observed(nil, nil)
	d, ps := decide(testPolicy(), "b", []checks.Status{st("c1", checks.Degraded, 0.9), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
		threeServers, obs, newPolicyState(), now)
	if d.Desired.Servers["s1"].State != haproxy.StateDrain {
		t.Fatalf("s1 not drained: %+v", d.Desired.Servers["s1"])
	}
	d, _ = decide(testPolicy(), "b", []checks.Status{st("c1", checks.Degraded, 0.9), st("c2", checks.Degraded, 0.99), st("c3", checks.Up, 0)},
		threeServers, obs, ps, now.Add(time.Second))
	if d.Desired.Servers["s1"].State != haproxy.StateDrain || d.Desired.Servers["s2"].State != haproxy.StateReady {
		t.Fatalf("drain hopped: s1 %+v, s2 %+v", d.Desired.Servers["s1"], d.Desired.Servers["s2"])
	}
}

func TestWeights(t *testing.T) {
	cfg := testPolicy()
	now := time.Unix(1000, 0)
	obs := observed(nil, nil)
	run := func(ps policyState, score float64, at time.Time) (int, policyState) {
		d, next := decide(cfg, "b", []checks.Status{st("c1", checks.Up, score), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
			threeServers, obs, ps, at)
		return d.Desired.Servers["s1"].Weight, next
	}
	w, ps := run(newPolicyState(), 0, now)
	if w != 100 {
		t.Fatalf("idle weight %d, want 100 (no slow start on the first pass)", w)
	}
	// Saturated: the weight walks down by at most WeightStep per pass to WeightMin.
	var seq []int
	for i := 0; i < 6; i++ {
		w, ps = run(ps, 0.8, now.Add(time.Duration(i+1)*time.Second))
		seq = append(seq, w)
	}
	want := []int{80, 60, 40, 20, 10, 10}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("weights %v, want %v", seq, want)
		}
	}
	// Half-way score: the target is between min and max.
	if got := targetWeight(cfg, checks.Status{Score: 0.65, ScoreKnown: true}); got != 55 {
		t.Errorf("target at 0.65 = %d, want 55", got)
	}
	// A tiny change in score does not move the weight (dead band).
	cur := map[string]int{"s1": 55}
	ps2 := newPolicyState()
	ps2.weight = cur
	ps2.wantReady["s1"] = true
	if got, _ := nextWeight(cfg, checks.Status{Score: 0.66, ScoreKnown: true}, ps2, "s1", time.Time{}, now); got != 55 {
		t.Errorf("weight moved on jitter: %d", got)
	}
}

func TestSlowStartAfterReturn(t *testing.T) {
	cfg := testPolicy()
	now := time.Unix(1000, 0)
	obs := observed(nil, nil)
	statuses := func(v checks.Verdict) []checks.Status {
		return []checks.Status{st("c1", v, 0), st("c2", checks.Up, 0), st("c3", checks.Up, 0)}
	}
	_, ps := decide(cfg, "b", statuses(checks.Up), threeServers, obs, newPolicyState(), now)
	_, ps = decide(cfg, "b", statuses(checks.Drain), threeServers, obs, ps, now.Add(time.Second))
	var got []int
	for _, at := range []time.Duration{2 * time.Second, 17 * time.Second, 32 * time.Second, 40 * time.Second} {
		var d decision
		d, ps = decide(cfg, "b", statuses(checks.Up), threeServers, obs, ps, now.Add(at))
		got = append(got, d.Desired.Servers["s1"].Weight)
	}
	// Back at t=2s: ramp from WeightMin over 30 s: 10 at 0 s, 55 at 15 s, full after 30 s.
	want := []int{10, 55, 100, 100}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("slow start weights %v, want %v", got, want)
		}
	}
}

func TestAgentModeHasNoWeights(t *testing.T) {
	d, _ := decide(testPolicy(), "b", []checks.Status{st("c1", checks.Up, 0.7)}, map[string]string{"c1": "s1"}, nil, newPolicyState(), time.Unix(0, 0))
	if w := d.Desired.Servers["s1"].Weight; w != -1 {
		t.Fatalf("agent mode weight %d, want -1 (leave alone)", w)
	}
}
