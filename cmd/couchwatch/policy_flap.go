package main

import (
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// flapState is one server's flapping history: how many times in a row it failed soon
// after coming back, when it last went out and came back, and its current hold-down.
type flapState struct {
	flaps       int
	outAt, back time.Time
	hold        time.Duration
}

// holdFlapping keeps a flapping node out (DESIGN.md §2, like HAProxy's rise and BGP's
// dampening). A node that goes down within FlapWindow of coming back is flapping:
// from its second quick failure on it stays out for FlapHold after each failure,
// doubling each time up to FlapHoldMax, though it answers; a node that stays in for
// FlapWindow starts afresh. A hold never leaves fewer than MinReady nodes answering.
func holdFlapping(cfg PolicyConfig, w haproxy.Want, st checks.Status, srv string, prev policyState, next *policyState,
	answering int, now time.Time) (haproxy.Want, *haproxy.Skip) {
	f := prev.flap[srv]
	wasReady, known := prev.wantReady[srv]
	switch {
	case w.State == haproxy.StateMaint && st.Verdict == checks.Down && (!known || wasReady):
		f = flapOut(cfg, f, now)
	case w.State == haproxy.StateReady && f.outAt.Add(f.hold).After(now) && answering-1 >= cfg.MinReady:
		next.flap[srv] = f
		held := haproxy.Want{State: haproxy.StateMaint, Weight: -1, Reason: "flapping", EndSessions: true,
			Detail: "flapping: held out until " + f.outAt.Add(f.hold).UTC().Format(time.RFC3339Nano)}
		return held, &haproxy.Skip{Server: srv, Want: haproxy.StateReady, Reason: haproxy.SkipFlapping}
	case w.State == haproxy.StateReady && known && !wasReady:
		f.back = now
	}
	if !f.outAt.IsZero() {
		next.flap[srv] = f
	}
	return w, nil
}

// flapOut records a take-out for a failure and sets the next hold-down.
func flapOut(cfg PolicyConfig, f flapState, now time.Time) flapState {
	if !f.back.IsZero() && now.Sub(f.back) < cfg.FlapWindow {
		f.flaps++
	} else {
		f.flaps = 1
	}
	f.outAt, f.hold = now, 0
	if f.flaps >= 2 && cfg.FlapHold > 0 {
		f.hold = cfg.FlapHold
		for i := 2; i < f.flaps && f.hold < cfg.FlapHoldMax; i++ {
			f.hold *= 2
		}
		f.hold = min(f.hold, cfg.FlapHoldMax)
	}
	return f
}
