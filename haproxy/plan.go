package haproxy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Skip reasons.
const (
	SkipNoSuchServer  = "no such server"
	SkipNotVerified   = "not verified"
	SkipLastReady     = "last ready server"
	SkipInvalidWeight = "invalid weight"
)

// Plan computes the runtime commands that move o towards d, within b. It is pure
// and deterministic: commands are ordered by server name, and for one server addr,
// then weight, then state; skips are ordered by server name.
//
// Rules (DESIGN.md §3):
//   - Only servers named in d.Servers are touched; a named server HAProxy does not
//     have is skipped ("no such server").
//   - An address differing from what HAProxy holds is set (port too when Want.Port > 0).
//   - "ready" is sent only for a Verified want, or under d.FailOpen ("not verified").
//   - Weights are absolute (0-256); -1 leaves the weight alone.
//   - d.FailOpen: every named server goes ready with its initial (config) weight.
//   - At least max(1, b.MinReady) servers of the backend keep admin state ready:
//     take-outs are considered maint first, then drain, ties by name, and one that
//     would break the rule is skipped ("last ready server").
func Plan(d Desired, o Observed, b Budget) ([]Command, []Skip) {
	backend := d.Backend
	if backend == "" {
		backend = o.Backend
	}
	obs := make(map[string]Server, len(o.Servers))
	ready := 0
	for _, s := range o.Servers {
		obs[s.Name] = s
		if s.Admin == StateReady {
			ready++
		}
	}
	names := make([]string, 0, len(d.Servers))
	for n := range d.Servers {
		names = append(names, n)
	}
	slices.Sort(names)

	var (
		cmds     []Command
		skips    []Skip
		takeOuts []Command
		stateCmd = map[string]Command{}
	)
	for _, name := range names {
		w := d.Servers[name]
		s, ok := obs[name]
		if !ok {
			skips = append(skips, Skip{Server: name, Want: w.State, Reason: SkipNoSuchServer})
			continue
		}
		state, weight := w.State, w.Weight
		if d.FailOpen {
			state, weight = StateReady, s.IWeight
			if w.Reason == "" {
				w.Reason = "fail_open"
			}
		}
		mk := func(op, text string) Command {
			return Command{Server: name, Op: op, Text: text, Reason: w.Reason, Detail: w.Detail}
		}
		if w.Addr != "" && (w.Addr != s.Addr || (w.Port > 0 && w.Port != s.Port)) {
			text := fmt.Sprintf("set server %s/%s addr %s", backend, name, w.Addr)
			if w.Port > 0 {
				text += " port " + strconv.Itoa(w.Port)
			}
			cmds = append(cmds, mk("addr", text))
		}
		switch {
		case weight < -1 || weight > 256:
			skips = append(skips, Skip{Server: name, Want: state, Reason: SkipInvalidWeight})
		case weight >= 0 && weight != s.UWeight:
			cmds = append(cmds, mk("weight", fmt.Sprintf("set server %s/%s weight %d", backend, name, weight)))
		}
		if state == "" || state == s.Admin {
			continue
		}
		if state != StateReady && state != StateDrain && state != StateMaint {
			skips = append(skips, Skip{Server: name, Want: state, Reason: fmt.Sprintf("unknown state %q", state)})
			continue
		}
		if state == StateReady && !w.Verified && !d.FailOpen {
			skips = append(skips, Skip{Server: name, Want: state, Reason: SkipNotVerified})
			continue
		}
		c := mk("state", fmt.Sprintf("set server %s/%s state %s", backend, name, state))
		switch {
		case state == StateReady:
			ready++
			stateCmd[name] = c
		case s.Admin == StateReady:
			takeOuts = append(takeOuts, c) // ready -> drain/maint: costs one ready server
		default:
			stateCmd[name] = c // drain <-> maint: the ready count does not change
		}
	}

	minReady := max(1, b.MinReady)
	slices.SortFunc(takeOuts, func(a, b Command) int {
		// maint first (the more urgent), then drain, then by name.
		am, bm := stateOf(a) == StateMaint, stateOf(b) == StateMaint
		if am != bm {
			if am {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Server, b.Server)
	})
	for _, c := range takeOuts {
		if ready-1 < minReady {
			skips = append(skips, Skip{Server: c.Server, Want: stateOf(c), Reason: SkipLastReady})
			continue
		}
		ready--
		stateCmd[c.Server] = c
	}
	for _, name := range names {
		if c, ok := stateCmd[name]; ok {
			cmds = append(cmds, c)
		}
	}
	opRank := map[string]int{"addr": 0, "weight": 1, "state": 2}
	slices.SortStableFunc(cmds, func(a, b Command) int {
		if c := cmp.Compare(a.Server, b.Server); c != 0 {
			return c
		}
		return cmp.Compare(opRank[a.Op], opRank[b.Op])
	})
	slices.SortStableFunc(skips, func(a, b Skip) int { return cmp.Compare(a.Server, b.Server) })
	return cmds, skips
}

func stateOf(c Command) AdminState {
	for _, s := range adminStates() {
		if strings.HasSuffix(c.Text, " state "+string(s)) {
			return s
		}
	}
	return ""
}
