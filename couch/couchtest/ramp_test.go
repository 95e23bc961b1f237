package couchtest

import (
	"testing"
	"time"
)

func TestLatencyRampAt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	r := latencyRamp{from: 5 * ms, to: 405 * ms, over: 10 * time.Second, start: t0}
	for _, tc := range []struct {
		name string
		at   time.Time
		want time.Duration
	}{
		{"start", t0, 5 * ms},
		{"half way", t0.Add(5 * time.Second), 205 * ms},
		{"end", t0.Add(10 * time.Second), 405 * ms},
		{"stays there", t0.Add(time.Hour), 405 * ms},
		{"clock before start", t0.Add(-time.Second), 5 * ms},
	} {
		if got := r.at(tc.at); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := (latencyRamp{}).at(t0); got != 0 {
		t.Errorf("zero ramp adds %v", got)
	}
}

// A ramp delays /_up (and everything else) while the node keeps answering; clearing it
// ends the delay.
func TestLatencyRampDelaysReplies(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	n.SetLatencyRamp(150*time.Millisecond, 150*time.Millisecond, 0)
	start := time.Now()
	if r := do(t, "GET", n.URL()+"/_up", basic); r.status != 200 {
		t.Fatalf("/_up during a ramp: %d", r.status)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("/_up took %v during a 150 ms ramp", took)
	}
	n.SetLatencyRamp(0, 0, 0)
	if got := n.settings().latency; got != 0 {
		t.Fatalf("latency %v after the ramp was cleared", got)
	}
}
