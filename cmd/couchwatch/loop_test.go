package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

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
		want    bool
	}{
		{"no change: due", nil, 0, false, true},
		{"one change, inside the window", []int{0}, 30, false, false},
		{"one change, window over", []int{0}, 50, false, true},
		{"changes keep coming: window extends", []int{0, 40, 80}, 100, false, false},
		{"never past the maximum", []int{0, 40, 80, 120, 160, 200, 240, 280, 320, 360, 400, 440, 480}, 500, false, true},
		{"a node still failing keeps it open", []int{0}, 60, true, false},
		{"but not past the maximum", []int{0}, 500, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l loopState
			for _, c := range tt.changes {
				l.changed(ms(c))
			}
			if got := l.due(ms(tt.check), lt, tt.failing); got != tt.want {
				t.Fatalf("due = %v, want %v (window ends %v)", got, tt.want, l.settleEnd(lt).Sub(t0))
			}
		})
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
