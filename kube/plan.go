package kube

import (
	"sort"
)

// nodeView is what the planner knows about one Kubernetes node.
type nodeView struct {
	Name     string
	Flagged  bool     // carries our taint, our label or our condition set to True
	TaintFor string   // the server our taint names, if any
	Servers  []string // configured CouchDB servers placed on this node
}

// want is the desired flag state of one node.
type want struct {
	Node   string
	Flag   bool
	Server string  // the CouchDB server the flag is for
	Reason string  // why: saturated, recovered, stale
	Score  float64 // the server's load score (orders new flags)
}

// Reasons of a want.
const (
	reasonSaturated = "saturated"
	reasonRecovered = "recovered"
	reasonStale     = "stale"
)

// plan is pure: from the nodes, the servers' states and which servers could
// not be placed, it returns the nodes to clear, the flagged nodes to keep
// flagged (re-asserted, so a removed label comes back), and the nodes to flag,
// most loaded first. Budgets and dry-run are the guard's business.
//
// A flagged node is cleared when every CouchDB on it has cooled down, or when
// it hosts no configured CouchDB any more (stale), unless the server its taint
// names simply cannot be placed right now (unknown is never acted on).
func plan(nodes []nodeView, servers map[string]serverState, unplaced map[string]bool) (clears, keeps, sets []want) {
	for _, n := range nodes {
		if n.Flagged {
			switch {
			case len(n.Servers) == 0 && unplaced[n.TaintFor]:
				keeps = append(keeps, want{Node: n.Name, Flag: true, Server: n.TaintFor, Reason: reasonSaturated})
			case len(n.Servers) == 0:
				clears = append(clears, want{Node: n.Name, Server: n.TaintFor, Reason: reasonStale})
			case allCool(n.Servers, servers):
				clears = append(clears, want{Node: n.Name, Server: n.TaintFor, Reason: reasonRecovered})
			default:
				server := n.TaintFor
				if server == "" {
					server, _ = hottest(n.Servers, servers, false)
				}
				keeps = append(keeps, want{Node: n.Name, Flag: true, Server: server, Reason: reasonSaturated})
			}
			continue
		}
		if s, ok := hottest(n.Servers, servers, true); ok {
			sets = append(sets, want{Node: n.Name, Flag: true, Server: s, Reason: reasonSaturated, Score: servers[s].Score})
		}
	}
	sort.Slice(sets, func(i, j int) bool {
		if sets[i].Score != sets[j].Score {
			return sets[i].Score > sets[j].Score
		}
		return sets[i].Node < sets[j].Node
	})
	return clears, keeps, sets
}

func allCool(names []string, servers map[string]serverState) bool {
	for _, s := range names {
		if !servers[s].Cool {
			return false
		}
	}
	return true
}

// hottest returns the server with the highest score among names (only hot
// ones when hotOnly), ties broken by name.
func hottest(names []string, servers map[string]serverState, hotOnly bool) (string, bool) {
	best, found := "", false
	for _, s := range names {
		st := servers[s]
		if hotOnly && !st.Hot {
			continue
		}
		if !found || st.Score > servers[best].Score || (st.Score == servers[best].Score && s < best) {
			best, found = s, true
		}
	}
	return best, found
}
