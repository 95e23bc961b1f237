package couchtest

import "time"

// latencyRamp is a delay that rises linearly from from to to over over, from start on,
// then stays at to. The zero value adds nothing.
type latencyRamp struct {
	from, to, over time.Duration
	start          time.Time
}

// at returns the ramp's delay at now.
func (r latencyRamp) at(now time.Time) time.Duration {
	if r.start.IsZero() {
		return 0
	}
	el := now.Sub(r.start)
	if el >= r.over || r.over <= 0 {
		return r.to
	}
	if el < 0 {
		el = 0
	}
	return r.from + time.Duration(float64(r.to-r.from)*float64(el)/float64(r.over))
}

// SetLatencyRamp makes the node slow down gradually while it keeps answering: from
// now on every reply (/_up included) is delayed by from, rising linearly to to over
// over, then staying at to, on top of SetLatency. It is what a node under a growing
// load looks like to a prober, as opposed to a hang. SetLatencyRamp(0, 0, 0) ends it.
func (n *Node) SetLatencyRamp(from, to, over time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if from == 0 && to == 0 {
		n.ramp = latencyRamp{}
		return
	}
	n.ramp = latencyRamp{from: from, to: to, over: over, start: time.Now()}
}
