package haproxy

import (
	"reflect"
	"testing"
)

func srv(name string, admin AdminState, uweight int) Server {
	return Server{Name: name, Addr: "10.0.0.1", Port: 5984, Admin: admin, OpUp: true, UWeight: uweight, Weight: uweight, IWeight: 1}
}

// watchAll names every server of o in d, those not named with a want that changes
// nothing: they are watched, so they count as serving.
func watchAll(d Desired, o Observed) Desired {
	out := Desired{Backend: d.Backend, FailOpen: d.FailOpen, Servers: map[string]Want{}}
	for _, s := range o.Servers {
		out.Servers[s.Name] = Want{Weight: -1}
	}
	for n, w := range d.Servers {
		out.Servers[n] = w
	}
	return out
}

func TestPlan(t *testing.T) {
	const b = "couchdb-servers"
	three := Observed{Backend: b, Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateReady, 1), srv("n3", StateReady, 1)}}
	down := func(s Server) Server { s.OpUp, s.OpState = false, 0; return s }
	keep := Want{Weight: -1}
	tests := []struct {
		name      string
		d         Desired
		o         Observed
		budget    Budget
		only      bool // do not watch the servers d does not name
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
			name:     "absolute weight, never percent; weight 0 is a take-out, last",
			d:        Desired{Servers: map[string]Want{"n1": {State: StateReady, Weight: 0}, "n3": {Weight: 128}}},
			o:        three,
			wantCmds: []string{"set server couchdb-servers/n3 weight 128", "set server couchdb-servers/n1 weight 0"},
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
			wantCmds:  []string{"set server couchdb-servers/n2 state maint", "set server couchdb-servers/n1 state drain"},
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
			name: "a server coming back makes room for a take-out, the ready first",
			d: Desired{Servers: map[string]Want{
				"n1": {State: StateMaint, Weight: -1},
				"n2": {State: StateReady, Weight: -1, Verified: true},
			}},
			o:        Observed{Backend: b, Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateDrain, 1)}},
			wantCmds: []string{"set server couchdb-servers/n2 state ready", "set server couchdb-servers/n1 state maint"},
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
			name: "a server DOWN in HAProxy does not serve: the nolb nodes keep one in",
			d: Desired{Servers: map[string]Want{
				"n2": {State: StateDrain, Weight: -1, Reason: "maintenance"},
				"n3": {State: StateDrain, Weight: -1, Reason: "maintenance"},
			}},
			o:         Observed{Backend: b, Servers: []Server{down(srv("n1", StateReady, 1)), srv("n2", StateReady, 1), srv("n3", StateReady, 1)}},
			wantCmds:  []string{"set server couchdb-servers/n2 state drain"},
			wantSkips: []Skip{{Server: "n3", Want: StateDrain, Reason: SkipLastReady}},
		},
		{
			name: "an unwatched server does not count as serving",
			d: Desired{Servers: map[string]Want{
				"n1": {State: StateMaint, Weight: -1, Reason: "down"},
			}},
			o:         three,
			only:      true,
			wantSkips: []Skip{{Server: "n1", Want: StateMaint, Reason: SkipLastReady}},
		},
		{
			name:      "drain to ready of a server DOWN in HAProxy adds nothing",
			d:         Desired{Servers: map[string]Want{"n1": {State: StateReady, Weight: -1, Verified: true}, "n2": {State: StateMaint, Weight: -1}}},
			o:         Observed{Backend: b, Servers: []Server{down(srv("n1", StateDrain, 1)), srv("n2", StateReady, 1)}},
			only:      true,
			wantCmds:  []string{"set server couchdb-servers/n1 state ready"},
			wantSkips: []Skip{{Server: "n2", Want: StateMaint, Reason: SkipLastReady}},
		},
		{
			name:     "maint to ready makes a server UP at once: it counts",
			d:        Desired{Servers: map[string]Want{"n1": {State: StateReady, Weight: -1, Verified: true}, "n2": {State: StateMaint, Weight: -1}}},
			o:        Observed{Backend: b, Servers: []Server{down(srv("n1", StateMaint, 1)), srv("n2", StateReady, 1)}},
			only:     true,
			wantCmds: []string{"set server couchdb-servers/n1 state ready", "set server couchdb-servers/n2 state maint"},
		},
		{
			name:     "down node: maint, then its sessions ended",
			d:        Desired{Servers: map[string]Want{"n1": {State: StateMaint, Weight: -1, EndSessions: true}}},
			o:        three,
			wantCmds: []string{"set server couchdb-servers/n1 state maint", "shutdown sessions server couchdb-servers/n1"},
		},
		{
			name: "already in maint with sessions left: ended again",
			d:    Desired{Servers: map[string]Want{"n1": {State: StateMaint, Weight: -1, EndSessions: true}}},
			o: Observed{Backend: b, Servers: []Server{func() Server { s := srv("n1", StateMaint, 1); s.CurConns = 2; return s }(),
				srv("n2", StateReady, 1)}},
			wantCmds: []string{"shutdown sessions server couchdb-servers/n1"},
		},
		{
			name: "fail open: wanted ready with initial weight, unverified; maint kept",
			d: Desired{FailOpen: true, Servers: map[string]Want{
				"n1": {State: StateReady, Weight: 0},
				"n2": keep,
				"n3": keep,
				"n4": {State: StateMaint, Weight: -1, Reason: "down"},
			}},
			o: Observed{Backend: b, Servers: []Server{
				srv("n1", StateMaint, 0), srv("n2", StateDrain, 1), {Name: "n3", Admin: StateReady, UWeight: 7, IWeight: 3}, srv("n4", StateMaint, 1),
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
			only:     true,
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
			d := tt.d
			if !tt.only {
				d = watchAll(d, tt.o)
			}
			cmds, skips := Plan(d, tt.o, tt.budget)
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
				c2, s2 := Plan(d, tt.o, tt.budget)
				if !reflect.DeepEqual(c2, cmds) || !reflect.DeepEqual(s2, skips) {
					t.Fatalf("Plan is not deterministic")
				}
			}
		})
	}
}

func TestPlanCopiesReason(t *testing.T) {
	o := Observed{Backend: "b", Servers: []Server{srv("n1", StateReady, 1), srv("n2", StateReady, 1)}}
	d := watchAll(Desired{Servers: map[string]Want{"n1": {State: StateMaint, Weight: 0, Reason: "down", Detail: "connection refused"}}}, o)
	cmds, _ := Plan(d, o, Budget{})
	if len(cmds) != 2 {
		t.Fatalf("got %d commands, want 2: %+v", len(cmds), cmds)
	}
	for _, c := range cmds {
		if c.Reason != "down" || c.Detail != "connection refused" || c.Server != "n1" {
			t.Errorf("command %+v: want Reason down, Detail copied, Server n1", c)
		}
	}
	if cmds[0].Op != OpState || cmds[1].Op != OpWeight || cmds[0].State != StateMaint || cmds[1].Weight != 0 {
		t.Errorf("commands %+v; want state maint, then weight 0", cmds)
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
