package checks

import (
	"testing"
	"time"
)

func TestDeadline(t *testing.T) {
	const floor, ceiling = 50 * time.Millisecond, time.Second
	ms := time.Millisecond
	ramp := func(from, to time.Duration, steps int) []time.Duration {
		var out []time.Duration
		for i := range steps {
			out = append(out, from+(to-from)*time.Duration(i)/time.Duration(steps-1))
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"no answer yet: the cap", nil, ceiling},
		{"fast node: the floor", []time.Duration{3 * ms, 2 * ms, 4 * ms}, floor},
		{"second slowest recent answer times the factor", []time.Duration{5 * ms, 40 * ms, 30 * ms, 10 * ms}, 120 * ms},
		{"one spike is jitter", []time.Duration{5 * ms, 90 * ms, 10 * ms}, floor},
		{"one answer so far", []time.Duration{30 * ms}, 120 * ms},
		{"slow node: capped", []time.Duration{400 * ms, 300 * ms}, ceiling},
		{"old spikes forgotten after the window", append([]time.Duration{100 * ms, 100 * ms}, ramp(ms, ms, deadlineWindow)...), floor},
		{"two spikes still in the window", append(ramp(ms, ms, deadlineWindow-2), 100*ms, 100*ms), 400 * ms},
		{"end of a 5-400 ms ramp", ramp(5*ms, 400*ms, 40), ceiling},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d deadline
			for _, s := range tc.samples {
				d.observe(s)
			}
			if got := d.get(floor, ceiling); got != tc.want {
				t.Fatalf("deadline %v, want %v", got, tc.want)
			}
		})
	}
}

// A node whose latency rises from 5 ms to 400 ms over 10 s, probed every 250 ms, never
// takes longer than the deadline learnt from its earlier answers; a node that answered in
// 3 ms and then is silent for 150 ms has passed its deadline.
func TestDeadlineRampNeverTimesOut(t *testing.T) {
	const floor, ceiling = 50 * time.Millisecond, time.Second
	var d deadline
	for i := range 80 { // 20 s: 10 s of ramp, 10 s at 400 ms
		lat := min(5*time.Millisecond+395*time.Millisecond*time.Duration(i)/40, 400*time.Millisecond)
		if dl := d.get(floor, ceiling); i > 0 && lat >= dl {
			t.Fatalf("probe %d: latency %v reached the deadline %v", i, lat, dl)
		}
		d.observe(lat)
	}
	var fast deadline
	for range deadlineWindow {
		fast.observe(3 * time.Millisecond)
	}
	if dl := fast.get(floor, ceiling); dl >= 150*time.Millisecond {
		t.Fatalf("a 3 ms node's deadline is %v: 150 ms of silence would not count", dl)
	}
	d.forget()
	if got := d.get(floor, ceiling); got != ceiling {
		t.Fatalf("after forget: %v, want the cap", got)
	}
}
