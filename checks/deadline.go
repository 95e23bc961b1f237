package checks

import "time"

// deadlineWindow is how many recent /_up answers a node's deadline is learnt from: at
// the default interval, the last 4 s.
const deadlineWindow = 16

// deadlineFactor is how many times its slowest recent answer a node may take before a
// probe counts as failed. A node whose latency rises gradually raises its own deadline
// faster than it slows down (a ramp from 5 ms to 400 ms over 10 s grows by under 1.3x
// between probes); a node that answered in 3 ms and then says nothing for 150 ms is
// not slow but stopped.
const deadlineFactor = 4

// deadline learns how long one node's /_up may take: deadlineFactor times the second
// slowest of its last deadlineWindow answers (one spike in the window is jitter, two are
// the node's latency), never below a floor (so that jitter of a fast node,
// a GC pause or a busy machine is not a failure) and never above a cap (so that a node
// cannot train it to wait forever). Before the first answer it is the cap. It is pure:
// the runner feeds it latencies.
type deadline struct {
	recent [deadlineWindow]time.Duration
	n      int // samples held, up to deadlineWindow
	next   int // where the next sample goes
}

// observe records the latency of one answered probe.
func (d *deadline) observe(latency time.Duration) {
	d.recent[d.next] = latency
	d.next = (d.next + 1) % deadlineWindow
	d.n = min(d.n+1, deadlineWindow)
}

// forget drops every sample: a node that comes back is learnt again from the cap.
func (d *deadline) forget() { *d = deadline{} }

// get returns the deadline of the next probe.
func (d *deadline) get(floor, ceiling time.Duration) time.Duration {
	if d.n == 0 {
		return ceiling
	}
	// The second slowest: one spike in the window is jitter, two are the node's latency.
	var first, second time.Duration
	for _, l := range d.recent[:d.n] {
		switch {
		case l > first:
			first, second = l, first
		case l > second:
			second = l
		}
	}
	if d.n == 1 {
		second = first
	}
	return min(max(deadlineFactor*second, floor), ceiling)
}
