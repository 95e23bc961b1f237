package haproxy

import (
	"reflect"
	"testing"
)

func srv(name string, admin AdminState, uweight int) Server {
	return Server{Name: name, Addr: "10.0.0.1", Port: 5984, Admin: admin, OpUp: true, UWeight: uweight, Weight: uweight, IWeight: 1}
}

func TestPlan(t *testing.T) {
	const b = "couchdb-servers"
	three := Observed{Backend: b, Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateReady, 1), srv("n3", StateReady, 1)}}
	keep := Want{Weight: -1}
	tests := []struct {
		name      string
		d         Desired
		o         Observed
		budget    Budget
		wantCmds  []string
		wantSkips []Skip
	}{
		{
			name: "nothing to do",
			d:    Desired{Servers: map[string]Want{"n1": {State: StateReady, Weight: 1, Verified: true}}},
			o:    three,
		},
		{
			name:      "unknown server skipped, others untouched",
			d:         Desired{Servers: map[string]Want{"nx": {State: StateDrain, Weight: -1}}},
			o:         three,
			wantSkips: []Skip{{Server: "nx", Want: StateDrain, Reason: SkipNoSuchServer}},
		},
		{
			name:     "drain one",
			d:        Desired{Servers: map[string]Want{"n2": {State: StateDrain, Weight: -1, Reason: "saturated"}}},
			o:        three,
			wantCmds: []string{"set server couchdb-servers/n2 state drain"},
		},
		{
			name: "ready needs verification",
			d: Desired{Servers: map[string]Want{
				"n1": {State: StateReady, Weight: -1},
				"n2": {State: StateReady, Weight: -1, Verified: true},
			}},
			o:         Observed{Backend: b, Servers: []Server{srv("n1", StateMaint, 1), srv("n2", StateDrain, 1), srv("n3", StateReady, 1)}},
			wantCmds:  []string{"set server couchdb-servers/n2 state ready"},
			wantSkips: []Skip{{Server: "n1", Want: StateReady, Reason: SkipNotVerified}},
		},
		{
			name:     "absolute weight, never percent",
			d:        Desired{Servers: map[string]Want{"n1": {State: StateReady, Weight: 0}, "n3": {Weight: 128}}},
			o:        three,
			wantCmds: []string{"set server couchdb-servers/n1 weight 0", "set server couchdb-servers/n3 weight 128"},
		},
		{
			name:      "weight out of range skipped",
			d:         Desired{Servers: map[string]Want{"n1": {Weight: 257}}},
			o:         three,
			wantSkips: []Skip{{Server: "n1", Reason: SkipInvalidWeight}},
		},
		{
			name: "addr with and without port",
			d: Desired{Servers: map[string]Want{
				"n1": {Weight: -1, Addr: "10.0.0.9", Port: 5984},
				"n2": {Weight: -1, Addr: "10.0.0.1", Port: 6984},
				"n3": {Weight: -1, Addr: "10.0.0.1"},
			}},
			o:        three,
			wantCmds: []string{"set server couchdb-servers/n1 addr 10.0.0.9 port 5984", "set server couchdb-servers/n2 addr 10.0.0.1 port 6984"},
		},
		{
			name:     "per server order addr weight state",
			d:        Desired{Servers: map[string]Want{"n2": {State: StateReady, Weight: 5, Addr: "10.0.0.2", Port: 5984, Verified: true}}},
			o:        Observed{Backend: b, Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateMaint, 1)}},
			wantCmds: []string{"set server couchdb-servers/n2 addr 10.0.0.2 port 5984", "set server couchdb-servers/n2 weight 5", "set server couchdb-servers/n2 state ready"},
		},
		{
			name: "never the last ready server, maint first then drain by name",
			d: Desired{Servers: map[string]Want{
				"n1": {State: StateDrain, Weight: -1},
				"n2": {State: StateMaint, Weight: -1},
				"n3": {State: StateDrain, Weight: -1},
			}},
			o:         three,
			wantCmds:  []string{"set server couchdb-servers/n1 state drain", "set server couchdb-servers/n2 state maint"},
			wantSkips: []Skip{{Server: "n3", Want: StateDrain, Reason: SkipLastReady}},
		},
		{
			name:      "budget min ready 2",
			d:         Desired{Servers: map[string]Want{"n1": {State: StateDrain, Weight: -1}, "n2": {State: StateDrain, Weight: -1}}},
			o:         three,
			budget:    Budget{MinReady: 2},
			wantCmds:  []string{"set server couchdb-servers/n1 state drain"},
			wantSkips: []Skip{{Server: "n2", Want: StateDrain, Reason: SkipLastReady}},
		},
		{
			name: "a server coming back makes room for a take-out",
			d: Desired{Servers: map[string]Want{
				"n1": {State: StateMaint, Weight: -1},
				"n2": {State: StateReady, Weight: -1, Verified: true},
			}},
			o:        Observed{Backend: b, Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateDrain, 1)}},
			wantCmds: []string{"set server couchdb-servers/n1 state maint", "set server couchdb-servers/n2 state ready"},
		},
		{
			name:     "drain to maint does not count against ready",
			d:        Desired{Servers: map[string]Want{"n1": {State: StateMaint, Weight: -1}}},
			o:        Observed{Backend: b, Servers: []Server{srv("n1", StateDrain, 1), srv("n2", StateReady, 1)}},
			wantCmds: []string{"set server couchdb-servers/n1 state maint"},
		},
		{
			name:      "already nothing ready: no take-out at all",
			d:         Desired{Servers: map[string]Want{"n1": {State: StateMaint, Weight: -1}}},
			o:         Observed{Backend: b, Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateMaint, 1)}},
			wantSkips: []Skip{{Server: "n1", Want: StateMaint, Reason: SkipLastReady}},
		},
		{
			name: "fail open: ready with initial weight, unverified",
			d: Desired{FailOpen: true, Servers: map[string]Want{
				"n1": {State: StateMaint, Weight: 0},
				"n2": keep,
				"n3": keep,
			}},
			o: Observed{Backend: b, Servers: []Server{
				srv("n1", StateMaint, 0), srv("n2", StateDrain, 1), {Name: "n3", Admin: StateReady, UWeight: 7, IWeight: 3},
			}},
			wantCmds: []string{
				"set server couchdb-servers/n1 weight 1", "set server couchdb-servers/n1 state ready",
				"set server couchdb-servers/n2 state ready",
				"set server couchdb-servers/n3 weight 3",
			},
		},
		{
			name:     "servers not desired are left alone",
			d:        Desired{Servers: map[string]Want{"n1": keep}},
			o:        Observed{Backend: b, Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateMaint, 9)}},
			wantCmds: nil,
		},
		{
			name:     "desired backend overrides observed",
			d:        Desired{Backend: "other", Servers: map[string]Want{"n1": {State: StateDrain, Weight: -1}}},
			o:        three,
			wantCmds: []string{"set server other/n1 state drain"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds, skips := Plan(tt.d, tt.o, tt.budget)
			var texts []string
			for _, c := range cmds {
				texts = append(texts, c.Text)
				if err := checkCommand(c); err != nil {
					t.Errorf("Plan emitted a command Apply refuses: %v", err)
				}
			}
			if !reflect.DeepEqual(texts, tt.wantCmds) {
				t.Errorf("commands:\n got %q\nwant %q", texts, tt.wantCmds)
			}
			if !reflect.DeepEqual(skips, tt.wantSkips) {
				t.Errorf("skips:\n got %+v\nwant %+v", skips, tt.wantSkips)
			}
			// Deterministic: the same input gives the same output.
			for range 5 {
				c2, s2 := Plan(tt.d, tt.o, tt.budget)
				if !reflect.DeepEqual(c2, cmds) || !reflect.DeepEqual(s2, skips) {
					t.Fatalf("Plan is not deterministic")
				}
			}
		})
	}
}

func TestPlanCopiesReason(t *testing.T) {
	o := Observed{Backend: "b", Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateReady, 1)}}
	d := Desired{Servers: map[string]Want{"n1": {State: StateMaint, Weight: 0, Reason: "down", Detail: "connection refused"}}}
	cmds, _ := Plan(d, o, Budget{})
	if len(cmds) != 2 {
		t.Fatalf("got %d commands, want 2: %+v", len(cmds), cmds)
	}
	for _, c := range cmds {
		if c.Reason != "down" || c.Detail != "connection refused" || c.Server != "n1" {
			t.Errorf("command %+v: want Reason down, Detail copied, Server n1", c)
		}
	}
	if cmds[0].Op != "weight" || cmds[1].Op != "state" {
		t.Errorf("ops = %s, %s; want weight, state", cmds[0].Op, cmds[1].Op)
	}
	d.FailOpen = true
	d.Servers["n1"] = Want{Weight: -1}
	o.Servers[0] = srv("n1", StateMaint, 0)
	cmds, _ = Plan(d, o, Budget{})
	for _, c := range cmds {
		if c.Reason != "fail_open" {
			t.Errorf("fail-open command %+v: want Reason fail_open", c)
		}
	}
}

// The safety invariant over many random-ish inputs: after applying the plan, at
// least max(1, MinReady) servers stay ready unless fewer were ready to begin with,
// and "ready" is never set unverified outside fail-open.
func TestPlanInvariant(t *testing.T) {
	states := []AdminState{StateReady, StateDrain, StateMaint, ""}
	for seed := range 4096 {
		x := seed
		next := func(n int) int { v := x % n; x /= n; return v }
		var o Observed
		d := Desired{Servers: map[string]Want{}}
		for i, name := range []string{"a", "b", "c", "d"} {
			_ = i
			o.Servers = append(o.Servers, srv(name, states[next(3)], 1))
			d.Servers[name] = Want{State: states[next(4)], Weight: -1, Verified: next(2) == 0}
		}
		minReady := 1 + seed%2
		before, after := 0, map[string]AdminState{}
		for _, s := range o.Servers {
			after[s.Name] = s.Admin
			if s.Admin == StateReady {
				before++
			}
		}
		cmds, _ := Plan(d, o, Budget{MinReady: minReady})
		for _, c := range cmds {
			if c.Op == "state" {
				if stateOf(c) == StateReady && !d.Servers[c.Server].Verified {
					t.Fatalf("seed %d: unverified ready: %+v", seed, c)
				}
				after[c.Server] = stateOf(c)
			}
		}
		n := 0
		for _, s := range after {
			if s == StateReady {
				n++
			}
		}
		if n < min(before, minReady) {
			t.Fatalf("seed %d: %d ready after plan, %d before, min %d: %+v", seed, n, before, minReady, cmds)
		}
	}
}
