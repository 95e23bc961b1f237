package main

import (
	"testing"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

func TestShouldFailOpen(t *testing.T) {
	blocked := st("c2", checks.Down, 0)
	blocked.AuthBlocked = true
	tests := []struct {
		name     string
		statuses []checks.Status
		want     bool
	}{
		{"no nodes", nil, false},
		{"every node down", []checks.Status{st("c1", checks.Down, 0), st("c2", checks.Down, 0), st("c3", checks.Down, 0)}, true},
		{"start-up: one dead node, the others not yet known", []checks.Status{st("c1", checks.Unknown, 0), st("c2", checks.Down, 0), st("c3", checks.Unknown, 0)}, false},
		{"one node answers in maintenance", []checks.Status{st("c1", checks.Drain, 0), st("c2", checks.Down, 0), st("c3", checks.Down, 0)}, false},
		{"a node answers 401 at once (auth blocked): our view works", []checks.Status{st("c1", checks.Down, 0), blocked, st("c3", checks.Down, 0)}, false},
		{"one up", []checks.Status{st("c1", checks.Up, 0), st("c2", checks.Down, 0), st("c3", checks.Down, 0)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shouldFailOpen(tt.statuses); got != tt.want {
				t.Errorf("shouldFailOpen = %v, want %v", got, tt.want)
			}
		})
	}
}

// A Silent node stays out of a fail-open while other nodes are AuthBlocked.
func TestFailOpenKeepsSilentNodeOut(t *testing.T) {
	silent := st("c1", checks.Down, 0)
	silent.Silent = true
	blocked := st("c2", checks.Down, 0)
	blocked.AuthBlocked = true
	w := failOpenWants([]checks.Status{silent, blocked, st("c3", checks.Down, 0)}, threeServers)
	if w["s1"].State != haproxy.StateMaint || w["s2"].State != haproxy.StateReady || w["s3"].State != haproxy.StateReady {
		t.Fatalf("wants %+v: want s1 maint, s2 and s3 ready", w)
	}
	w = failOpenWants([]checks.Status{silent, st("c2", checks.Down, 0), st("c3", checks.Down, 0)}, threeServers)
	if w["s1"].State != haproxy.StateReady {
		t.Fatalf("no node auth-blocked: a silent node is handed back like the others: %+v", w["s1"])
	}
}

// Load never takes serving capacity below half the servers (rounded up), never below
// MinReady: with a node already out, a saturated node keeps serving at a lower weight.
func TestLoadCapacityFloor(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name      string
		statuses  []checks.Status
		admin     map[string]haproxy.AdminState
		minReady  int
		wantState haproxy.AdminState
		wantSkip  string
	}{
		{"three up, one saturated: drained", []checks.Status{st("c1", checks.Up, 0), st("c2", checks.Degraded, 0.9), st("c3", checks.Up, 0)},
			nil, 1, haproxy.StateDrain, ""},
		{"one down, one saturated: serves at minimum weight", []checks.Status{st("c1", checks.Up, 0), st("c2", checks.Degraded, 0.9), st("c3", checks.Down, 0)},
			map[string]haproxy.AdminState{"s3": "maint"}, 1, haproxy.StateReady, haproxy.SkipCapacity},
		{"MIN_READY 3: never drained", []checks.Status{st("c1", checks.Up, 0), st("c2", checks.Degraded, 0.9), st("c3", checks.Up, 0)},
			nil, 3, haproxy.StateReady, haproxy.SkipCapacity},
		{"already drained for load stays drained while capacity allows", []checks.Status{st("c1", checks.Up, 0), st("c2", checks.Degraded, 0.9), st("c3", checks.Up, 0)},
			map[string]haproxy.AdminState{"s2": "drain"}, 1, haproxy.StateDrain, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testPolicy()
			cfg.MinReady = tt.minReady
			prev := newPolicyState()
			if tt.admin["s2"] == haproxy.StateDrain {
				prev.loadDrained["s2"] = true
			}
			d, _ := decide(cfg, "b", tt.statuses, threeServers, observed(tt.admin, nil), prev, now)
			w := d.Desired.Servers["s2"]
			if w.State != tt.wantState {
				t.Fatalf("s2 = %+v, want %s", w, tt.wantState)
			}
			if w.State == haproxy.StateReady && w.Weight != cfg.WeightMin {
				t.Errorf("saturated s2 kept in at weight %d, want %d", w.Weight, cfg.WeightMin)
			}
			var got string
			for _, s := range d.Desired.Refused {
				got = s.Reason
			}
			if got != tt.wantSkip {
				t.Errorf("refused %+v, want reason %q", d.Desired.Refused, tt.wantSkip)
			}
		})
	}
}

// A node that fails again soon after coming back is held out, each hold longer than
// the last, with reason "flapping"; the admin-state changes in a minute of flapping
// stay few.
func TestFlappingHoldDown(t *testing.T) {
	cfg := testPolicy()
	start := time.Unix(1000, 0)
	ps := newPolicyState()
	changes, held := 0, 0
	last := haproxy.StateReady
	for i := 0; i < 200; i++ { // 60 s of a node down and up every 300 ms
		now := start.Add(time.Duration(i) * 300 * time.Millisecond)
		v := checks.Up
		if i%2 == 1 {
			v = checks.Down
		}
		admin := map[string]haproxy.AdminState{"s1": last}
		var d decision
		d, ps = decide(cfg, "b", []checks.Status{st("c1", v, 0), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
			threeServers, observed(admin, nil), ps, now)
		w := d.Desired.Servers["s1"]
		if w.Reason == "flapping" {
			held++
		}
		if w.State != last {
			changes++
			last = w.State
		}
	}
	t.Logf("flapping 60 s: %d admin-state changes, %d passes held", changes, held)
	if changes > 20 || held == 0 {
		t.Fatalf("%d admin-state changes in 60 s (want at most 20), %d passes held (want some)", changes, held)
	}
	// One clean failure and return: no hold.
	ps = newPolicyState()
	for i, v := range []checks.Verdict{checks.Up, checks.Down, checks.Up} {
		d, next := decide(cfg, "b", []checks.Status{st("c1", v, 0), st("c2", checks.Up, 0), st("c3", checks.Up, 0)},
			threeServers, observed(nil, nil), ps, start.Add(time.Duration(i)*time.Second))
		ps = next
		if i == 2 && d.Desired.Servers["s1"].State != haproxy.StateReady {
			t.Fatalf("a node that failed once is held: %+v", d.Desired.Servers["s1"])
		}
	}
}
