package checks

import (
	"errors"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch"
)

var (
	okUp    = couch.Up{Status: couch.StatusOK, HTTPStatus: 200}
	nolbUp  = couch.Up{Status: couch.StatusNoLB, HTTPStatus: 404}
	maintUp = couch.Up{Status: couch.StatusMaintenanceMode, HTTPStatus: 404}
	refused = &couch.Error{Op: "up", Node: "n", Reason: couch.ReasonRefused, Err: errors.New("connection refused")}
	timeout = &couch.Error{Op: "up", Node: "n", Reason: couch.ReasonTimeout, Err: errors.New("deadline")}
)

type step struct {
	up    couch.Up
	err   error
	knock Knock
}

func ok() step            { return step{up: okUp} }
func blocked() step       { return step{err: timeout, knock: KnockAnswered} }
func silent() step        { return step{err: timeout, knock: KnockSilent} }
func fail(err error) step { return step{err: err} }
func reply(u couch.Up) step {
	return step{up: u}
}

func TestHysteresis(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		steps      []step
		want       []Verdict // verdict after each step
		wantReason string    // reason after the last step
	}{
		{"unknown until rise", 2, 2, []step{ok(), ok(), ok()}, []Verdict{Unknown, Up, Up}, "ok"},
		{"unknown until fall", 2, 2, []step{fail(refused), fail(refused)}, []Verdict{Unknown, Down}, "refused"},
		{"one failure does not take a node down", 2, 2,
			[]step{ok(), ok(), fail(timeout), ok(), fail(timeout)}, []Verdict{Unknown, Up, Up, Up, Up}, "ok"},
		{"fall in a row takes it down", 2, 3,
			[]step{ok(), ok(), fail(timeout), fail(timeout), fail(timeout)}, []Verdict{Unknown, Up, Up, Up, Down}, "timeout"},
		{"fall 1 takes it down at once", 1, 1, []step{ok(), fail(refused)}, []Verdict{Up, Down}, "refused"},
		{"down needs rise oks to come back", 2, 1,
			[]step{ok(), ok(), fail(refused), ok(), fail(refused), ok(), ok()},
			[]Verdict{Unknown, Up, Down, Down, Down, Down, Up}, "ok"},
		{"nolb drains at once", 2, 2, []step{ok(), ok(), reply(nolbUp)}, []Verdict{Unknown, Up, Drain}, "maintenance nolb"},
		{"maintenance_mode drains at once, its data unavailable", 1, 2, []step{ok(), reply(maintUp)}, []Verdict{Up, Drain},
			"maintenance maintenance_mode: " + ReasonMaintenanceTrue},
		// The auth-coupled hang (DESIGN.md §5).
		{"auth blocked keeps the verdict", 2, 2, []step{ok(), ok(), blocked(), blocked(), blocked(), blocked()},
			[]Verdict{Unknown, Up, Up, Up, Up, Up}, ReasonAuthBlocked + " (its authenticated probes time out, an unauthenticated one answers at once); ok"},
		{"auth blocked does not finish a fall", 2, 2, []step{ok(), ok(), fail(timeout), blocked(), blocked()},
			[]Verdict{Unknown, Up, Up, Up, Up}, ReasonAuthBlocked + " (its authenticated probes time out, an unauthenticated one answers at once); ok"},
		{"auth blocked ends with an ok probe", 2, 2, []step{ok(), ok(), blocked(), ok()}, []Verdict{Unknown, Up, Up, Up}, "ok"},
		{"silent falls like a timeout", 2, 2, []step{ok(), ok(), silent(), silent()}, []Verdict{Unknown, Up, Up, Down}, ReasonSilent},
		{"a down node stays down while auth blocked", 2, 1, []step{ok(), ok(), silent(), blocked(), blocked()},
			[]Verdict{Unknown, Up, Down, Down, Down}, ReasonAuthBlocked + " (its authenticated probes time out, an unauthenticated one answers at once); timeout"},
		{"back from maintenance after rise ok replies", 2, 2,
			[]step{ok(), ok(), reply(nolbUp), ok(), ok()}, []Verdict{Unknown, Up, Drain, Drain, Up}, "ok"},
		{"maintenance interrupts the return", 2, 2,
			[]step{ok(), ok(), reply(nolbUp), ok(), reply(nolbUp), ok()}, []Verdict{Unknown, Up, Drain, Drain, Drain, Drain}, "maintenance nolb"},
		{"a node in maintenance that dies is down", 2, 1,
			[]step{ok(), ok(), reply(maintUp), fail(refused)}, []Verdict{Unknown, Up, Drain, Down}, "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newNodeState(tt.rise, tt.fall)
			now := time.Unix(1000, 0)
			var reason string
			for i, st := range tt.steps {
				now = now.Add(time.Second)
				s.observeUp(st.up, st.err, st.knock, now)
				var got Verdict
				got, reason = s.verdict()
				if got != tt.want[i] {
					t.Fatalf("after step %d: verdict %s, want %s", i, got, tt.want[i])
				}
			}
			if reason != tt.wantReason {
				t.Errorf("reason %q, want %q", reason, tt.wantReason)
			}
		})
	}
}

func TestVerified(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newNodeState(2, 2)
	s.observeUp(okUp, nil, KnockNone, now)
	if s.verified(now, time.Second) {
		t.Fatal("verified before rise")
	}
	s.observeUp(okUp, nil, KnockNone, now)
	if !s.verified(now, time.Second) {
		t.Fatal("not verified after rise ok probes")
	}
	if s.verified(now.Add(2*time.Second), time.Second) {
		t.Fatal("verified with a stale probe")
	}
	s.observeUp(nolbUp, nil, KnockNone, now)
	if s.verified(now, time.Second) {
		t.Fatal("verified while in maintenance")
	}
}

func TestDownForgetsLoad(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := LoadConfig{High: 0.8, Low: 0.5, Smoothing: 1}
	s := newNodeState(1, 1)
	s.observeUp(okUp, nil, KnockNone, now)
	s.load.observe(cfg, 1, now)
	if v, _ := s.verdict(); v != Degraded {
		t.Fatalf("verdict %s, want degraded", v)
	}
	s.observeUp(couch.Up{}, refused, KnockNone, now)
	s.observeUp(okUp, nil, KnockNone, now)
	if v, _ := s.verdict(); v != Up {
		t.Fatalf("verdict after coming back %s, want up (load forgotten)", v)
	}
}
