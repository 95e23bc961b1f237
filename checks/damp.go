package checks

import (
	"time"

	"github.com/medic/couchwatch/couch"
)

// peakWindow keeps the samples of the last window and answers their highest: run_queue
// on a loaded CouchDB is mostly 0-5 with spikes to 30-110, so the peak over a minute is
// steady where single samples jump. A zero window keeps only the last sample.
type peakWindow struct {
	at []time.Time
	v  []float64
}

func (w *peakWindow) add(window time.Duration, now time.Time, v float64) float64 {
	keep := 0
	for i, t := range w.at {
		if window > 0 && now.Sub(t) < window {
			w.at[keep], w.v[keep] = t, w.v[i]
			keep++
		}
	}
	w.at, w.v = append(w.at[:keep], now), append(w.v[:keep], v)
	top := v
	for _, x := range w.v {
		top = max(top, x)
	}
	return top
}

func (w *peakWindow) reset() { w.at, w.v = w.at[:0], w.v[:0] }

// damper holds what the runner keeps between samples of one node to damp its signals.
type damper struct {
	runQueue, dirtyCPU peakWindow
	sysLatency         time.Duration // EWMA of the _system call's duration
}

// damp applies the windows to one sample's signals and the _system duration d.
func (dm *damper) damp(c LoadConfig, s Signals, d time.Duration, now time.Time) Signals {
	if !s.HaveSystem {
		return s
	}
	s.RunQueue = dm.runQueue.add(c.Window, now, s.RunQueue)
	s.DirtyCPU = dm.dirtyCPU.add(c.Window, now, s.DirtyCPU)
	if dm.sysLatency == 0 {
		dm.sysLatency = d
	} else {
		dm.sysLatency = time.Duration(c.LatencyEWM*float64(d) + (1-c.LatencyEWM)*float64(dm.sysLatency))
	}
	s.SystemLatency = dm.sysLatency
	return s
}

func (dm *damper) reset() {
	dm.runQueue.reset()
	dm.dirtyCPU.reset()
	dm.sysLatency = 0
}

// ownTasks keeps the tasks that run on the node named self: /_active_tasks is
// cluster-wide, every node lists every node's tasks (DESIGN.md §5). With no name yet
// nothing can be attributed, and nil is returned.
func ownTasks(tasks []couch.ActiveTask, self string) []couch.ActiveTask {
	if self == "" || tasks == nil {
		return nil
	}
	out := []couch.ActiveTask{}
	for _, t := range tasks {
		if t.Node == self {
			out = append(out, t)
		}
	}
	return out
}
