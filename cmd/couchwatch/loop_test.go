package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

func TestLoopSettles(t *testing.T) {
	lt := loopTimes{quiet: 50 * time.Millisecond, quietMax: 500 * time.Millisecond, retryMin: 100 * time.Millisecond, retryMax: 500 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name    string
		changes []int // ms
		check   int   // ms
		failing bool
		heard   bool // every node heard from after the last went down
		want    bool
	}{
		{"no change: due", nil, 0, false, false, true},
		{"one change, inside the window", []int{0}, 30, false, false, false},
		{"one change, window over", []int{0}, 50, false, false, true},
		{"changes keep coming: window extends", []int{0, 40, 80}, 100, false, false, false},
		{"never past the maximum", []int{0, 40, 80, 120, 160, 200, 240, 280, 320, 360, 400, 440, 480}, 500, false, false, true},
		{"a node still failing keeps it open", []int{0}, 60, true, false, false},
		{"every node heard from: closes at once", []int{0}, 2, false, true, true},
		{"heard from, but one still failing: open", []int{0}, 2, true, true, false},
		{"but not past the maximum", []int{0}, 500, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l loopState
			for _, c := range tt.changes {
				l.changed(ms(c))
			}
			if got := l.due(ms(tt.check), lt, tt.failing, tt.heard); got != tt.want {
				t.Fatalf("due = %v, want %v (window ends %v)", got, tt.want, l.settleEnd(lt).Sub(t0))
			}
		})
	}
}

func TestHeardAfterDown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	down := func(n string, since int) checks.Status {
		return checks.Status{Node: n, Verdict: checks.Down, Since: ms(since)}
	}
	up := func(n string, lastOK int, failing bool) checks.Status {
		return checks.Status{Node: n, Verdict: checks.Up, LastOK: ms(lastOK + 1), LastOKSent: ms(lastOK), Failing: failing}
	}
	for _, tc := range []struct {
		name     string
		statuses []checks.Status
		want     bool
	}{
		{"the others answered after the crash", []checks.Status{up("a", 12, false), down("b", 10), up("c", 11, false)}, true},
		{"one not heard from since", []checks.Status{up("a", 12, false), down("b", 10), up("c", 5, false)}, false},
		{"an answer read after, but to a probe sent before", []checks.Status{up("a", 12, false), down("b", 10), up("c", 9, false)}, false},
		{"one failing too", []checks.Status{up("a", 12, false), down("b", 10), up("c", 11, true)}, false},
		{"every node down", []checks.Status{down("a", 10), down("b", 11), down("c", 12)}, true},
		{"a later down node sets the bar", []checks.Status{up("a", 12, false), down("b", 10), down("c", 13)}, false},
		{"no new down node: nothing heard of", []checks.Status{up("a", 12, false), down("b", -100), up("c", 11, false)}, false},
		{"no down node at all", []checks.Status{up("a", 12, false), up("c", 11, false)}, false},
	} {
		if got := heardAfterDown(tc.statuses, ms(0)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLoopBackoff(t *testing.T) {
	lt := loopTimes{quiet: 50 * time.Millisecond, quietMax: 500 * time.Millisecond, retryMin: 100 * time.Millisecond, retryMax: 500 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	var l loopState
	down := fmt.Errorf("reconcile: dial: %w", errors.New("no such file"))
	var waits []time.Duration
	now := t0
	for i := 0; i < 6; i++ {
		began, _ := l.passed(now, lt, down)
		if began != (i == 0) {
			t.Fatalf("pass %d: outage began = %v", i, began)
		}
		waits = append(waits, l.retryAt.Sub(now))
		if l.useRuntime(now) {
			t.Fatal("runtime used during backoff")
		}
		now = l.retryAt
	}
	for _, w := range waits {
		if w > lt.retryMax {
			t.Fatalf("waits %v: one exceeds a probe interval (%v)", waits, lt.retryMax)
		}
	}
	// A verdict change tries HAProxy at once.
	l.retryAt = now.Add(time.Hour)
	l.changed(now)
	if !l.useRuntime(now) {
		t.Fatal("a verdict change did not wake the runtime API")
	}
	if _, ended := l.passed(now, lt, nil); !ended || l.backoff != 0 {
		t.Fatalf("recovery: ended %v, backoff %v", ended, l.backoff)
	}
	// Refused commands are not an outage (the Reconciler logged each).
	refused := fmt.Errorf("reconcile: %w: 1 of 2", haproxy.ErrCommandsFailed)
	if began, _ := l.passed(now, lt, refused); began {
		t.Fatal("refused commands reported as an outage")
	}
}
