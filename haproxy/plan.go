package haproxy

import (
	"cmp"
	"slices"
)

// Skip reasons.
const (
	SkipNoSuchServer  = "no such server"
	SkipNotVerified   = "not verified"
	SkipLastReady     = "last ready server"
	SkipInvalidWeight = "invalid weight"
	SkipReadyRefused  = "last ready server: a ready before it was refused"
	SkipBudget        = "load drain budget"
	SkipCapacity      = "load drain budget: capacity floor"
	SkipFlapping      = "flapping"
)

// Plan computes the runtime commands that move o towards d, within b. It is pure and
// deterministic.
//
// Rules (DESIGN.md §3):
//   - Only servers named in d.Servers are touched; a named server HAProxy does not
//     have is skipped ("no such server"). Only they count as serving.
//   - An address differing from what HAProxy holds is set (port too when Want.Port > 0).
//   - "ready" is sent only for a Verified want, or under d.FailOpen ("not verified").
//   - Weights are absolute (0-256); -1 leaves the weight alone.
//   - d.FailOpen: every server wanted ready goes ready with its initial weight.
//   - Safe at every prefix: commands that keep or add serving servers come first
//     (by server, then addr, weight, state), take-outs last (maint before drain, then
//     by name), each followed by its "shutdown sessions". A take-out that would leave
//     fewer than max(1, b.MinReady) servers serving is skipped ("last ready server"),
//     counting the readies before it as applied: Reconciler sends take-outs only once
//     the replies show they were (AdmitTakeOuts).
func Plan(d Desired, o Observed, b Budget) ([]Command, []Skip) {
	p := newPlanner(d, o)
	for _, name := range p.names {
		p.server(name, d.Servers[name])
	}
	p.admit(max(1, b.MinReady))
	slices.SortStableFunc(p.skips, func(a, b Skip) int { return cmp.Compare(a.Server, b.Server) })
	return append(p.first, p.admitted...), p.skips
}

// planner holds one Plan's working state.
type planner struct {
	backend  string
	failOpen bool
	obs      map[string]Server
	names    []string // d.Servers' names, sorted
	serving  int      // watched servers serving once the first phase is applied
	first    []Command
	takeOuts [][]Command // one group per server, each starting with its flip
	admitted []Command
	skips    []Skip
}

func newPlanner(d Desired, o Observed) *planner {
	p := &planner{backend: cmp.Or(d.Backend, o.Backend), failOpen: d.FailOpen, obs: make(map[string]Server, len(o.Servers))}
	for _, s := range o.Servers {
		p.obs[s.Name] = s
	}
	for n := range d.Servers {
		p.names = append(p.names, n)
	}
	slices.Sort(p.names)
	return p
}

// admit keeps the take-outs, most urgent first, while enough servers keep serving.
func (p *planner) admit(minServing int) {
	slices.SortFunc(p.takeOuts, func(a, b []Command) int {
		if am, bm := a[0].State == StateMaint, b[0].State == StateMaint; am != bm {
			if am {
				return -1
			}
			return 1
		}
		return cmp.Compare(a[0].Server, b[0].Server)
	})
	for _, g := range p.takeOuts {
		if p.serving-1 < minServing {
			p.skips = append(p.skips, Skip{Server: g[0].Server, Want: wantOf(g[0]), Reason: SkipLastReady})
			continue
		}
		p.serving--
		p.admitted = append(p.admitted, g...)
	}
}

// wantOf is what a take-out's flip command asked for: a state, or "" for weight 0.
func wantOf(c Command) AdminState { return c.State }
