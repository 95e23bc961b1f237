package checks

import (
	"time"

	"github.com/medic/couchwatch/couch"
)

// nodeState is the pure hysteresis state machine of one node. The runner feeds it probe
// results; it does no I/O and takes the time as an argument, so it is table-tested.
type nodeState struct {
	rise, fall int

	base        Verdict // Unknown, Up or Down: liveness after rise/fall
	okRun       int     // consecutive probes the node answered (ok or maintenance)
	failRun     int     // consecutive probes that failed
	okStatusRun int     // consecutive probes answered 200 ok
	maint       couch.UpStatus
	lastFail    couch.Reason
	lastOK      time.Time
	load        loadTracker

	// The auth-coupled hang (DESIGN.md §5), from the last probe: authenticated probe
	// timed out and an unauthenticated one answered (authBlocked), or got no answer
	// either (silent).
	authBlocked, silent bool
}

// Knock is what an unauthenticated /_up said after an authenticated probe timed out.
type Knock int

// Knock results.
const (
	KnockNone     Knock = iota // not asked: the probe did not time out
	KnockAnswered              // answered at once (401, or 200 with require_valid_user_except_for_up)
	KnockSilent                // no answer either
)

func newNodeState(rise, fall int) nodeState { return nodeState{rise: rise, fall: fall} }

// observeUp records one /_up probe and, when it timed out, the unauthenticated knock
// that followed. up is ignored when err is not nil. A node whose authenticated probe
// times out while it answers an unauthenticated one at once is alive, its authentication
// waiting on a hung peer: the probe counts neither as a failure nor as a success, so its
// verdict stays as it was.
func (s *nodeState) observeUp(up couch.Up, err error, knock Knock, now time.Time) {
	s.authBlocked = err != nil && knock == KnockAnswered
	s.silent = err != nil && knock == KnockSilent
	if s.authBlocked {
		return
	}
	if err != nil {
		s.okRun, s.okStatusRun = 0, 0
		s.failRun++
		s.lastFail = couch.Classify(err)
		if s.failRun >= s.fall && s.base != Down {
			s.base = Down
			s.load.forget()
		}
		return
	}
	s.failRun = 0
	s.okRun++
	s.lastOK = now
	if s.okRun >= s.rise && s.base != Up {
		s.base = Up
	}
	if up.Status == couch.StatusOK {
		s.okStatusRun++
		if s.maint != "" && s.okStatusRun >= s.rise {
			s.maint = "" // back from maintenance, verified by rise ok replies
		}
		return
	}
	// maintenance_mode, nolb, seeding: leave the load balancer at once.
	s.okStatusRun = 0
	s.maint = up.Status
	if s.maint == "" {
		s.maint = "unknown"
	}
}

// verdict returns the node's verdict and a short reason.
func (s *nodeState) verdict() (Verdict, string) {
	v, reason := s.baseVerdict()
	switch {
	case s.authBlocked:
		reason = ReasonAuthBlocked + " (its authenticated probes time out, an unauthenticated one answers at once); " + reason
	case s.silent && v == Down:
		reason = ReasonSilent
	case v == Drain && s.maint == couch.StatusMaintenanceMode:
		reason += ": " + ReasonMaintenanceTrue
	}
	return v, reason
}

// Reasons of the faults measured on a real cluster (DESIGN.md §5).
const (
	ReasonAuthBlocked     = "authentication on every node waits for the hung node that holds the _users shard"
	ReasonSilent          = "silent: no answer to an authenticated or an unauthenticated request (hung)"
	ReasonMaintenanceTrue = "its shards are unavailable to the cluster under n=1 (reads fail: 500 read_failure); maintenance_mode = nolb drains without that"
)

func (s *nodeState) baseVerdict() (Verdict, string) {
	switch s.base {
	case Down:
		return Down, string(s.lastFail)
	case Unknown:
		return Unknown, "not enough probes yet"
	}
	if s.maint != "" {
		return Drain, "maintenance " + string(s.maint)
	}
	if s.load.degraded {
		return Degraded, "saturated"
	}
	return Up, "ok"
}

// verified reports whether the node just passed its checks: up, out of maintenance, and
// its last probe answered 200 ok no longer than maxAge ago.
func (s *nodeState) verified(now time.Time, maxAge time.Duration) bool {
	return s.base == Up && s.maint == "" && s.okStatusRun > 0 && now.Sub(s.lastOK) <= maxAge
}
