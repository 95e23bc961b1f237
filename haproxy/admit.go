package haproxy

// SplitPhases splits a plan into what may go out at once (readies, weights, addresses,
// drain-maint moves) and the take-outs, which wait for the first phase's replies.
func SplitPhases(cmds []Command) (first, takeOuts []Command) {
	for _, c := range cmds {
		if c.TakeOut {
			takeOuts = append(takeOuts, c)
		} else {
			first = append(first, c)
		}
	}
	return first, takeOuts
}

// AdmitTakeOuts decides which take-outs may follow once the first phase's replies are
// in (results[i] is first[i]'s, nil when accepted). Plan admitted its take-outs
// counting every server it adds as serving; each added server with a refused or
// unconfirmed command costs one take-out, dropped from the end (the least urgent).
func AdmitTakeOuts(first []Command, results []error, takeOuts []Command) ([]Command, []Skip) {
	failedAdds := map[string]bool{}
	for i, c := range first {
		if c.Adds && (i >= len(results) || results[i] != nil) {
			failedAdds[c.Server] = true
		}
	}
	drop := len(failedAdds)
	if drop == 0 {
		return takeOuts, nil
	}
	var groups [][]Command // one per server, in order
	for _, c := range takeOuts {
		if n := len(groups); n > 0 && groups[n-1][0].Server == c.Server {
			groups[n-1] = append(groups[n-1], c)
			continue
		}
		groups = append(groups, []Command{c})
	}
	keep := max(0, len(groups)-drop)
	var out []Command
	for _, g := range groups[:keep] {
		out = append(out, g...)
	}
	var skips []Skip
	for _, g := range groups[keep:] {
		skips = append(skips, Skip{Server: g[0].Server, Want: g[0].State, Reason: SkipReadyRefused})
	}
	return out, skips
}
