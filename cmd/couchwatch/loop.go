package main

import (
	"context"
	"errors"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// verdictSource is what the main loop and pass need of checks.Runner.
type verdictSource interface {
	Snapshot() []checks.Status
	Changed() <-chan struct{}
}

// reconciler is what pass needs of haproxy.Reconciler.
type reconciler interface {
	ReconcileWith(ctx context.Context, decide func(haproxy.Observed) haproxy.Desired) (haproxy.Result, error)
}

// loopTimes are the main loop's intervals.
type loopTimes struct {
	quiet, quietMax time.Duration // quiescence after a verdict change (PolicyConfig)
	retryMin        time.Duration // first wait after a runtime API error
	retryMax        time.Duration // longest: one probe interval, so a HAProxy that answers again is used within it
}

// loopState is the main loop's memory, pure so it is table-tested: the settling window
// after verdict changes (consul-template's quiescence: wait until verdicts stop
// changing for quiet, never longer than quietMax, so correlated failures get one
// decision) and the backoff after runtime API errors.
type loopState struct {
	settleStart, settleLast time.Time // zero: not settling
	backoff                 time.Duration
	retryAt                 time.Time // the runtime API is not tried before this
	outage                  bool      // the last runtime pass failed with HAProxy unreachable
}

// changed records a verdict change: a settling window opens (or stays open), and the
// runtime API is tried at the next pass whatever the backoff said.
func (l *loopState) changed(now time.Time) {
	if l.settleStart.IsZero() {
		l.settleStart = now
	}
	l.settleLast = now
	l.retryAt = time.Time{}
}

// settleEnd is when the current window closes (zero when not settling).
func (l *loopState) settleEnd(t loopTimes) time.Time {
	if l.settleStart.IsZero() {
		return time.Time{}
	}
	end := l.settleLast.Add(t.quiet)
	if limit := l.settleStart.Add(t.quietMax); limit.Before(end) {
		end = limit
	}
	return end
}

// due reports whether a pass may run now; unsettled is true while nodes are still
// failing their probes without a verdict yet (the window then stays open, up to quietMax).
//
// heard is true once every node has been heard from after the last node went down
// (heardAfterDown): then nothing is left to wait for and the window closes at once.
func (l *loopState) due(now time.Time, t loopTimes, unsettled, heard bool) bool {
	end := l.settleEnd(t)
	if end.IsZero() {
		return true
	}
	if heard && !unsettled {
		l.settleStart, l.settleLast = time.Time{}, time.Time{}
		return true
	}
	if now.Before(end) {
		return false
	}
	if unsettled && now.Before(l.settleStart.Add(t.quietMax)) {
		l.settleLast = now // extend by quiet, never past quietMax
		return false
	}
	l.settleStart, l.settleLast = time.Time{}, time.Time{}
	return true
}

// useRuntime reports whether this pass talks to HAProxy.
func (l *loopState) useRuntime(now time.Time) bool { return !now.Before(l.retryAt) }

// passed records a runtime pass's outcome and reports whether the outage began (true,
// false) or ended (false, true) with it. Refused commands are not an outage: HAProxy
// answered, and the Reconciler logged each one.
func (l *loopState) passed(now time.Time, t loopTimes, err error) (began, ended bool) {
	unreachable := err != nil && !errors.Is(err, haproxy.ErrCommandsFailed)
	if err == nil {
		l.backoff, l.retryAt = 0, time.Time{}
	} else {
		l.backoff = min(max(2*l.backoff, t.retryMin), t.retryMax)
		l.retryAt = now.Add(l.backoff)
	}
	began, ended = unreachable && !l.outage, !unreachable && l.outage
	l.outage = unreachable
	return began, ended
}

// nextWake is when the loop must wake besides its ticker and verdict changes.
func (l *loopState) nextWake(t loopTimes) time.Time {
	if end := l.settleEnd(t); !end.IsZero() {
		return end
	}
	return l.retryAt
}

func (a *app) loopTimes() loopTimes {
	return loopTimes{quiet: a.cfg.Policy.Quiescence, quietMax: a.cfg.Policy.QuiescenceMax,
		retryMin: min(a.cfg.Checks.Interval, a.cfg.Reconcile) / 4, retryMax: a.cfg.Checks.Interval}
}

// loop runs a pass on every tick and on every verdict change, once the verdicts have
// settled. After a HAProxy error it retries within one probe interval (backing off
// from a quarter of it), and at once on a verdict change.
func (a *app) loop(ctx context.Context) {
	times := a.loopTimes()
	tick := a.clk.NewTicker(a.cfg.Reconcile)
	defer tick.Stop()
	wake := a.clk.NewTimer(time.Hour)
	defer wake.Stop()
	var l loopState
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick.C():
			case <-wake.C():
			case <-a.verdicts.Changed():
				l.changed(a.clk.Now())
			}
		}
		now := a.clk.Now()
		snap := a.verdicts.Snapshot()
		heard := !l.settleStart.IsZero() && heardAfterDown(snap, l.settleStart.Add(-times.quiet))
		if l.due(now, times, unsettled(snap), heard) {
			a.runPass(ctx, &l, times, now)
		}
		wake.Stop()
		if at := l.nextWake(times); !at.IsZero() {
			d := max(at.Sub(a.clk.Now()), time.Millisecond)
			if !l.settleStart.IsZero() {
				d = min(d, settlePoll) // the peers' answers are no verdict change: look again soon
			}
			wake.Reset(d)
		}
	}
}

// runPass runs one pass and logs a runtime API outage once when it begins and once
// when it ends (a refused command is logged by the Reconciler, not again here).
func (a *app) runPass(ctx context.Context, l *loopState, times loopTimes, now time.Time) {
	useRuntime := a.rec != nil && l.useRuntime(now)
	err := a.pass(ctx, useRuntime)
	if !useRuntime {
		return
	}
	began, ended := l.passed(a.clk.Now(), times, err)
	switch {
	case began:
		a.log.Warn("haproxy runtime api pass failed", "backend", a.cfg.HAProxy.Backend, "err", err, "retry_in", l.backoff)
	case ended:
		a.log.Info("haproxy runtime api answers again", "backend", a.cfg.HAProxy.Backend)
	}
}

// unsettled reports whether some node's probes disagree with its verdict (mid-fall or
// mid-rise).
func unsettled(statuses []checks.Status) bool {
	for _, st := range statuses {
		if st.Failing || st.Rising {
			return true
		}
	}
	return false
}

// settlePoll is how often a settling window looks whether every node has been heard from.
const settlePoll = 2 * time.Millisecond

// heardAfterDown reports whether a node went down at or after since and every other
// node has answered a probe sent since the last one did (checks.Runner asks them at once)
// without failing: couchwatch's own view works, the failure is that node's, and the
// settling window has nothing left to wait for. A node failing, or not heard from yet,
// keeps the window open.
func heardAfterDown(statuses []checks.Status, since time.Time) bool {
	var last time.Time
	for _, st := range statuses {
		if st.Verdict == checks.Down && st.Since.After(last) {
			last = st.Since
		}
	}
	if last.IsZero() || last.Before(since) {
		return false
	}
	for _, st := range statuses {
		if st.Verdict == checks.Down {
			continue
		}
		if st.Failing || st.LastOKSent.Before(last) { // a probe sent after it, not only read after

			return false
		}
	}
	return true
}
