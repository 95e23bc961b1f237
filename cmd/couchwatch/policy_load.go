package main

import (
	"sort"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// loadDrains picks the Degraded nodes to drain: the most saturated first, nodes
// already drained for load keeping their place (the budget does not hop), at most
// MaxLoadDrains, and never below the capacity floor (capacityFloor). The others keep
// serving at the minimum weight; each is returned as a refused change.
func loadDrains(cfg PolicyConfig, statuses []checks.Status, servers map[string]string,
	observed map[string]haproxy.Server, prev policyState) (map[string]bool, []haproxy.Skip) {
	var degraded []checks.Status
	for _, st := range statuses {
		if _, ok := servers[st.Node]; ok && st.Verdict == checks.Degraded {
			degraded = append(degraded, st)
		}
	}
	sort.SliceStable(degraded, func(i, j int) bool {
		a, b := degraded[i], degraded[j]
		if pa, pb := prev.loadDrained[servers[a.Node]], prev.loadDrained[servers[b.Node]]; pa != pb {
			return pa
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Node < b.Node
	})
	spare := servingCapacity(statuses, servers, observed, prev) - capacityFloor(cfg, len(servers))
	drain := map[string]bool{}
	var refused []haproxy.Skip
	for i, st := range degraded {
		skip := haproxy.Skip{Server: servers[st.Node], Want: haproxy.StateDrain, Reason: haproxy.SkipBudget}
		switch {
		case i >= cfg.MaxLoadDrains:
			refused = append(refused, skip)
		case i >= spare:
			skip.Reason = haproxy.SkipCapacity
			refused = append(refused, skip)
		default:
			drain[st.Node] = true
		}
	}
	return drain, refused
}

// capacityFloor is how many servers load drains always leave serving: half the
// watched servers rounded up, and never fewer than MinReady (like Envoy's panic
// threshold, load never takes a cluster below it).
func capacityFloor(cfg PolicyConfig, watched int) int {
	return max((watched+1)/2, cfg.MinReady)
}

// servingCapacity counts the nodes that serve, or would once readied, if no node were
// drained for load: answering (Up or Degraded) and, in runtime mode, serving in HAProxy
// or held out only by couchwatch's own load drain.
func servingCapacity(statuses []checks.Status, servers map[string]string, observed map[string]haproxy.Server, prev policyState) int {
	n := 0
	for _, st := range statuses {
		srv, ok := servers[st.Node]
		if !ok || (st.Verdict != checks.Up && st.Verdict != checks.Degraded) {
			continue
		}
		o, seen := observed[srv]
		if len(observed) == 0 || !seen || haproxy.Serving(o) || (prev.loadDrained[srv] && o.OpUp) {
			n++
		}
	}
	return n
}
