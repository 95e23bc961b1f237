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
}

func newNodeState(rise, fall int) nodeState { return nodeState{rise: rise, fall: fall} }

// observeUp records one /_up probe. up is ignored when err is not nil.
func (s *nodeState) observeUp(up couch.Up, err error, now time.Time) {
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
