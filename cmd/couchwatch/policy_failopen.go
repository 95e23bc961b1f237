package main

import (
	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// shouldFailOpen: every node has a verdict and none answers (DESIGN.md §3 rule 1). Then
// the likelier cause is couchwatch's own view (its network, its credentials), not the
// whole cluster. A node still Unknown (at start-up, the healthy nodes are, while a
// dead one already fails fast) means there is no verdict yet to fail open on; a node
// that answers, even in maintenance or only with a fast 401 (AuthBlocked), proves the
// view works: then Plan's serving minimum keeps a server in rotation instead.
func shouldFailOpen(statuses []checks.Status) bool {
	if len(statuses) == 0 {
		return false
	}
	for _, st := range statuses {
		switch {
		case st.Verdict == checks.Unknown:
			return false
		case st.Verdict != checks.Down, st.AuthBlocked:
			return false
		}
	}
	return true
}

// failOpenWants hands every server back to HAProxy (ready, its configured weight),
// except a Silent node while other nodes are AuthBlocked: that is the hung node whose
// _users shard every authentication waits on (DESIGN.md §5), and handing it back would
// send traffic to the one node that answers nothing.
func failOpenWants(statuses []checks.Status, servers map[string]string) map[string]haproxy.Want {
	blocked := false
	for _, st := range statuses {
		blocked = blocked || st.AuthBlocked
	}
	out := map[string]haproxy.Want{}
	for _, st := range statuses {
		srv, ok := servers[st.Node]
		if !ok {
			continue
		}
		if st.Silent && blocked {
			out[srv] = haproxy.Want{State: haproxy.StateMaint, Weight: -1, Reason: "down", EndSessions: true,
				Detail: "silent while other nodes' authentication waits on it: kept out"}
			continue
		}
		out[srv] = haproxy.Want{State: haproxy.StateReady, Weight: -1, Reason: "fail_open",
			Detail: "every node looks bad: handing servers back to HAProxy"}
	}
	return out
}
