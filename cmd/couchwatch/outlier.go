package main

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// HAProxy's own traffic as a second signal, after Envoy's outlier detection: what
// HAProxy's clients saw of each server ("show stat", re-read every pass) can say a node is
// bad while its /_up looks fine. Two findings:
//
//   - failing: over the last outlierWindow the server's real requests failed (5xx,
//     response errors, connection errors, retries) at least outlierMinFailures times and at a
//     rate of at least outlierFailRatio, and at least outlierPeerFactor times the rate of
//     its healthiest peer (so a cluster-wide failure, e.g. CHT's n=1 shards of a lost node,
//     which every coordinator sees alike, singles out no one; a node with no peer to compare
//     with is never singled out either). The node turns Degraded with that
//     reason: the policy drains it within the load-drain budget, or gives it the
//     minimum weight.
//   - slow: HAProxy's average response time of the server (rtime, last 1024 requests) is
//     at least outlierSlowMs and outlierPeerFactor times the median of its peers'. The
//     node's load score is raised to 1 with that reason: its weight falls, it is not
//     drained (a node that answers slowly is not taken out).
//
// The signal alone never marks a node down, never touches a node that is not Up, marks at
// most outlierMaxShare of the nodes (at least one; the worst first), and a finding holds
// for at least outlierHold so a node does not flap in and out.
const (
	outlierWindow      = 10 * time.Second
	outlierMinRequests = 10
	outlierMinFailures = 5
	outlierFailRatio   = 0.3
	outlierPeerFactor  = 4.0
	outlierSlowMs      = 250
	outlierMaxShare    = 1.0 / 3
	outlierHold        = 30 * time.Second
)

// trafficDelta is what one server did between two passes.
type trafficDelta struct {
	at             time.Time
	requests, fail int64
}

// outlierState is what the detector remembers between passes.
type outlierState struct {
	last    map[string]haproxy.Traffic // counters at the last pass, by server
	window  map[string][]trafficDelta  // deltas within outlierWindow, by server
	flagged map[string]outlierFinding  // current findings, by server
	since   map[string]time.Time       // when each current finding started
}

// outlierFinding is one server's finding; Reason is empty when there is none.
type outlierFinding struct {
	Failing, Slow bool
	Reason        string
	severity      float64 // for the cap: the worst first
}

// detectOutliers feeds one pass of "show stat" counters to the detector. It is pure: the
// findings depend only on prev, servers and now. A counter that went backwards (HAProxy
// reloaded or restarted) restarts that server's window.
func detectOutliers(prev outlierState, servers []haproxy.Server, now time.Time) (map[string]outlierFinding, outlierState) {
	next := outlierState{last: map[string]haproxy.Traffic{}, window: map[string][]trafficDelta{},
		flagged: map[string]outlierFinding{}, since: map[string]time.Time{}}
	stats := make([]serverStat, 0, len(servers))
	for _, s := range servers {
		next.last[s.Name] = s.Traffic
		next.window[s.Name] = slideWindow(prev, s, now)
		stats = append(stats, sumWindow(s, next.window[s.Name]))
	}
	found := map[string]outlierFinding{}
	for i, s := range stats {
		if f := judge(s, peersOf(stats, i)); f.Reason != "" {
			found[s.name] = f
		}
	}
	holdFindings(found, prev, servers, now)
	for _, name := range capFindings(found, prev, len(servers)) {
		next.flagged[name] = found[name]
		next.since[name] = prev.since[name]
		if _, was := prev.flagged[name]; !was {
			next.since[name] = now
		}
	}
	return next.flagged, next
}

// serverStat is one server's traffic over the window.
type serverStat struct {
	name           string
	requests, fail int64
	rtime          int
	http           bool
}

// slideWindow drops the deltas older than outlierWindow and adds this pass's; a counter
// that went backwards empties the window.
func slideWindow(prev outlierState, s haproxy.Server, now time.Time) []trafficDelta {
	t := s.Traffic
	var win []trafficDelta
	for _, d := range prev.window[s.Name] {
		if now.Sub(d.at) < outlierWindow {
			win = append(win, d)
		}
	}
	old, ok := prev.last[s.Name]
	if !ok {
		return win
	}
	// A retried 500 is only in Retries (haproxy.Traffic): every retry is a failed attempt.
	req := (t.Responses + t.RespErrors + t.ConnErrors + t.Retries) - (old.Responses + old.RespErrors + old.ConnErrors + old.Retries)
	fail := (t.Resp5xx + t.RespErrors + t.ConnErrors + t.Retries) - (old.Resp5xx + old.RespErrors + old.ConnErrors + old.Retries)
	switch {
	case req < 0 || fail < 0 || fail > req || t.Responses < old.Responses:
		return nil // counters reset: start again
	case req > 0:
		win = append(win, trafficDelta{at: now, requests: req, fail: fail})
	}
	return win
}

func sumWindow(s haproxy.Server, win []trafficDelta) serverStat {
	st := serverStat{name: s.Name, rtime: s.Traffic.RespTimeMs, http: s.Traffic.HTTP}
	for _, d := range win {
		st.requests += d.requests
		st.fail += d.fail
	}
	return st
}

// peers is what a server is compared with: the healthiest peer's failure rate (-1 while
// no peer has enough traffic) and the response times of the peers that had traffic.
type peers struct {
	bestRate float64
	rtimes   []int
}

func peersOf(stats []serverStat, self int) peers {
	p := peers{bestRate: -1}
	for j, o := range stats {
		if j == self || !o.http {
			continue
		}
		if o.requests >= outlierMinRequests {
			if r := float64(o.fail) / float64(o.requests); p.bestRate < 0 || r < p.bestRate {
				p.bestRate = r
			}
		}
		if o.requests > 0 {
			p.rtimes = append(p.rtimes, o.rtime)
		}
	}
	sort.Ints(p.rtimes)
	return p
}

// judge finds whether one server is failing or slow against its peers.
func judge(s serverStat, p peers) outlierFinding {
	var f outlierFinding
	if !s.http {
		return f
	}
	if p.bestRate >= 0 && s.requests >= outlierMinRequests && s.fail >= outlierMinFailures {
		ratio := float64(s.fail) / float64(s.requests)
		if ratio >= outlierFailRatio && ratio >= outlierPeerFactor*p.bestRate {
			f.Failing, f.severity = true, 1+ratio
			f.Reason = fmt.Sprintf("haproxy traffic: %d of %d requests failed in %s (healthiest peer %.0f%%)",
				s.fail, s.requests, outlierWindow, 100*p.bestRate)
		}
	}
	if len(p.rtimes) == 0 || s.requests == 0 {
		return f
	}
	med := median(p.rtimes)
	if s.rtime >= outlierSlowMs && float64(s.rtime) >= outlierPeerFactor*max(med, 1) {
		f.Slow = true
		f.severity = max(f.severity, float64(s.rtime)/max(med, 1)/1000)
		if f.Reason == "" {
			f.Reason = fmt.Sprintf("haproxy traffic: response time %d ms, peers %.0f ms", s.rtime, med)
		}
	}
	return f
}

// median of sorted, non-empty xs.
func median(xs []int) float64 {
	n := len(xs)
	if n%2 == 0 {
		return float64(xs[n/2-1]+xs[n/2]) / 2
	}
	return float64(xs[n/2])
}

// holdFindings keeps a finding of the last pass for outlierHold after its evidence went,
// while its server is still in the backend.
func holdFindings(found map[string]outlierFinding, prev outlierState, servers []haproxy.Server, now time.Time) {
	for name, f := range prev.flagged {
		if _, still := found[name]; !still && now.Sub(prev.since[name]) < outlierHold &&
			slices.ContainsFunc(servers, func(s haproxy.Server) bool { return s.Name == name }) {
			found[name] = f
		}
	}
}

// capFindings names the findings kept: the worst first (those already flagged keep their
// place), at most outlierMaxShare of the servers (at least one).
func capFindings(found map[string]outlierFinding, prev outlierState, servers int) []string {
	names := make([]string, 0, len(found))
	for name := range found {
		names = append(names, name)
	}
	sort.Slice(names, func(a, b int) bool {
		fa, fb := found[names[a]], found[names[b]]
		_, ka := prev.flagged[names[a]]
		_, kb := prev.flagged[names[b]]
		if ka != kb {
			return ka
		}
		if fa.severity != fb.severity {
			return fa.severity > fb.severity
		}
		return names[a] < names[b]
	})
	return names[:min(len(names), max(1, int(float64(servers)*outlierMaxShare)))]
}

// applyOutliers returns statuses with the findings applied: a failing node that is Up
// turns Degraded with the finding's reason; a slow one keeps its verdict but its load
// score is raised to 1 with the reason as its signal. Nodes that are not Up (or Degraded,
// for the slow finding) are left as they are. servers maps node names to HAProxy server
// names.
func applyOutliers(statuses []checks.Status, servers map[string]string, found map[string]outlierFinding) []checks.Status {
	if len(found) == 0 {
		return statuses
	}
	out := slices.Clone(statuses)
	for i := range out {
		st := &out[i]
		f, ok := found[servers[st.Node]]
		if !ok || servers[st.Node] == "" {
			continue
		}
		switch {
		case f.Failing && st.Verdict == checks.Up:
			st.Verdict, st.Reason = checks.Degraded, f.Reason
			st.Score, st.ScoreKnown, st.ScoreSignal = 1, true, "haproxy_traffic"
		case f.Slow && (st.Verdict == checks.Up || st.Verdict == checks.Degraded):
			st.Score, st.ScoreKnown, st.ScoreSignal = 1, true, "haproxy_response_time"
			if st.Verdict == checks.Up {
				st.Reason = "ok; " + f.Reason
			}
		}
	}
	return out
}

// trafficOutliers runs the detector on this pass's "show stat" counters, logs what
// changed and returns ps.statuses with the findings applied (ps.outliers is updated).
func (a *app) trafficOutliers(ps *passState, prev outlierState, obs haproxy.Observed) []checks.Status {
	found, next := detectOutliers(prev, obs.Servers, ps.at)
	ps.outliers = next
	for srv, f := range found {
		if _, was := prev.flagged[srv]; !was {
			a.log.Warn("haproxy traffic outlier", "backend", obs.Backend, "server", srv, "reason", f.Reason)
		}
	}
	for srv := range prev.flagged {
		if _, ok := found[srv]; !ok {
			a.log.Info("haproxy traffic outlier cleared", "backend", obs.Backend, "server", srv)
		}
	}
	return applyOutliers(ps.statuses, ps.servers, found)
}
