package main

import (
	"strings"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// recordPass turns what changed between two passes into timeline events and feeds the
// charts. It is the one hook the main loop calls for the status page.
func (a *app) recordPass(prev, ps passState) {
	a.history.observe(ps.at, ps.statuses)
	if a.shards != nil {
		a.shards.update(ps.at, ps.statuses, ps.dec.FailOpen)
	}
	nodeOf := make(map[string]string, len(ps.servers))
	for n, s := range ps.servers {
		nodeOf[s] = n
	}
	a.recordVerdicts(prev, ps)
	a.recordCommands(ps, nodeOf)
	a.recordSkips(prev, ps, nodeOf)
	a.recordEpisodes(prev, ps)
}

// recordVerdicts adds one event per verdict change.
func (a *app) recordVerdicts(prev, ps passState) {
	was := make(map[string]checks.Status, len(prev.statuses))
	for _, st := range prev.statuses {
		was[st.Node] = st
	}
	for _, st := range ps.statuses {
		old, ok := was[st.Node]
		if !ok || old.Verdict == st.Verdict {
			continue
		}
		a.timeline.add(Event{At: st.Since, Kind: evVerdict, Node: st.Node, Server: ps.servers[st.Node],
			Text: old.Verdict.String() + " → " + st.Verdict.String(), Reason: st.Reason})
	}
}

// recordCommands adds one event per HAProxy command sent, with its reason.
func (a *app) recordCommands(ps passState, nodeOf map[string]string) {
	for _, c := range ps.commands {
		text := c.Text
		if a.cfg.DryRun {
			text = "dry run: " + text
		}
		reason := c.Reason
		switch {
		case c.Detail == "" || c.Detail == c.Reason:
		case strings.HasPrefix(c.Detail, c.Reason):
			reason = c.Detail // "saturated: load score 0.92 (run_queue)"
		default:
			reason += ": " + c.Detail
		}
		a.timeline.add(Event{At: ps.at, Kind: evCommand, Node: nodeOf[c.Server], Server: c.Server, Text: text, Reason: reason})
	}
}

// recordSkips adds one event per refusal, when it begins.
func (a *app) recordSkips(prev, ps passState, nodeOf map[string]string) {
	seen := make(map[haproxy.Skip]bool, len(prev.skips))
	for _, s := range prev.skips {
		seen[s] = true
	}
	for _, s := range ps.skips {
		if !seen[s] {
			a.timeline.add(Event{At: ps.at, Kind: evRefused, Node: nodeOf[s.Server], Server: s.Server,
				Text: "refused " + string(s.Want), Reason: s.Reason + " (" + skipRule(s.Reason) + ")"})
		}
	}
}

// recordEpisodes adds the beginning and end of fail-open, budget and runtime-API episodes.
func (a *app) recordEpisodes(prev, ps passState) {
	tl := a.timeline
	switch {
	case ps.dec.FailOpen && !prev.dec.FailOpen:
		tl.add(Event{At: ps.at, Kind: evFailOpen, Text: "fail open began: every server handed back to HAProxy",
			Reason: "every node looks bad at once: more likely couchwatch's own view than the cluster (rule 1)"})
	case !ps.dec.FailOpen && prev.dec.FailOpen:
		tl.add(Event{At: ps.at, Kind: evFailOpen, Text: "fail open ended", Reason: "a node answers again"})
	}
	switch {
	case ps.dec.BudgetExhausted && !prev.dec.BudgetExhausted:
		tl.add(Event{At: ps.at, Kind: evBudget, Text: "load-drain budget used up: another saturated node stays in rotation at minimum weight",
			Reason: "COUCHWATCH_MAX_LOAD_DRAINS (rule 2)"})
	case !ps.dec.BudgetExhausted && prev.dec.BudgetExhausted:
		tl.add(Event{At: ps.at, Kind: evBudget, Text: "load-drain budget free again"})
	}
	switch {
	case ps.haproxyErr != nil && prev.haproxyErr == nil:
		tl.add(Event{At: ps.at, Kind: evHAProxy, Text: "runtime API failed: keeping the last known state", Reason: ps.haproxyErr.Error()})
	case ps.haproxyErr == nil && prev.haproxyErr != nil:
		tl.add(Event{At: ps.at, Kind: evHAProxy, Text: "runtime API answers again"})
	}
}

// skipRule names the safety rule (DESIGN.md §3) behind a refusal of Plan.
func skipRule(reason string) string {
	switch reason {
	case haproxy.SkipLastReady:
		return "rule 1: never the last ready server (COUCHWATCH_MIN_READY)"
	case haproxy.SkipNotVerified:
		return "rule 3: ready only after passing its checks"
	case haproxy.SkipReadyRefused:
		return "rule 1: a ready before it was refused, so this take-out would leave no ready server"
	case haproxy.SkipBudget:
		return "rule 2: load-drain budget used up (COUCHWATCH_MAX_LOAD_DRAINS): stays ready at minimum weight"
	case haproxy.SkipCapacity:
		return "rule 2: load drains never go below the capacity floor (half the servers, rounded up): stays ready at minimum weight"
	case haproxy.SkipFlapping:
		return "rule 3: flapping: held out until it stays up"
	case haproxy.SkipNoSuchServer:
		return "the server is not in HAProxy's backend"
	}
	return "refused by Plan"
}
