package haproxy

import (
	"fmt"
	"strconv"
)

// server plans one watched server: its commands go to the first phase, except the one
// that stops it serving (and the shutdown after it), which become a take-out group.
func (p *planner) server(name string, w Want) {
	s, ok := p.obs[name]
	if !ok {
		p.skips = append(p.skips, Skip{Server: name, Want: w.State, Reason: SkipNoSuchServer})
		return
	}
	if p.failOpen && (w.State == StateReady || w.State == "") {
		w.State, w.Weight, w.Verified = StateReady, s.IWeight, true
		if w.Reason == "" {
			w.Reason = "fail_open"
		}
	}
	mk := func(op, text string) Command {
		return Command{Server: name, Op: op, Text: text, Reason: w.Reason, Detail: w.Detail}
	}
	var cmds []Command
	if c, ok := p.addrCommand(name, s, w, mk); ok {
		cmds = append(cmds, c)
	}
	weight, wc, ok := p.weightCommand(name, s, w, mk)
	if ok {
		cmds = append(cmds, wc)
	}
	state, sc, ok := p.stateCommand(name, s, w, mk)
	if ok {
		cmds = append(cmds, sc)
	}
	before, after := Serving(s), servesAfter(s, state, weight)
	p.place(cmds, s, w, before, after, mk)
}

// place sorts one server's commands into the phases.
func (p *planner) place(cmds []Command, s Server, w Want, before, after bool, mk func(op, text string) Command) {
	if before {
		p.serving++
	}
	shutdown := mk(OpShutdown, fmt.Sprintf("shutdown sessions server %s/%s", p.backend, s.Name))
	if before && !after {
		p.placeTakeOut(cmds, w, shutdown)
		return
	}
	if !before && after {
		p.serving++
		for i := range cmds {
			cmds[i].Adds = true
		}
	}
	p.first = append(p.first, cmds...)
	if w.EndSessions && !after && s.Admin == StateMaint && s.CurConns > 0 {
		p.first = append(p.first, shutdown) // out already, sessions left: end them
	}
}

// placeTakeOut makes a take-out group of the commands that stop a serving server
// serving (the state command first, else weight 0, then the shutdown); the others
// stay in the first phase.
func (p *planner) placeTakeOut(cmds []Command, w Want, shutdown Command) {
	var group []Command
	for _, c := range cmds {
		if c.Op == OpState || (c.Op == OpWeight && c.Weight == 0) {
			c.TakeOut = true
			group = append(group, c)
			continue
		}
		p.first = append(p.first, c)
	}
	if len(group) == 0 {
		return // cannot happen: something in cmds stops it serving
	}
	if len(group) > 1 && group[1].Op == OpState {
		group[0], group[1] = group[1], group[0]
	}
	if w.EndSessions && w.State == StateMaint {
		shutdown.TakeOut = true
		group = append(group, shutdown)
	}
	p.takeOuts = append(p.takeOuts, group)
}

func (p *planner) addrCommand(name string, s Server, w Want, mk func(op, text string) Command) (Command, bool) {
	if w.Addr == "" || (w.Addr == s.Addr && (w.Port <= 0 || w.Port == s.Port)) {
		return Command{}, false
	}
	text := fmt.Sprintf("set server %s/%s addr %s", p.backend, name, w.Addr)
	if w.Port > 0 {
		text += " port " + strconv.Itoa(w.Port)
	}
	return mk(OpAddr, text), true
}

// weightCommand returns the weight the server will have and the command setting it.
func (p *planner) weightCommand(name string, s Server, w Want, mk func(op, text string) Command) (int, Command, bool) {
	switch {
	case w.Weight < -1 || w.Weight > 256:
		p.skips = append(p.skips, Skip{Server: name, Want: w.State, Reason: SkipInvalidWeight})
	case w.Weight >= 0 && w.Weight != s.UWeight:
		c := mk(OpWeight, fmt.Sprintf("set server %s/%s weight %d", p.backend, name, w.Weight))
		c.Weight = w.Weight
		return w.Weight, c, true
	}
	return s.UWeight, Command{}, false
}

// stateCommand returns the admin state the server will have and the command setting it.
func (p *planner) stateCommand(name string, s Server, w Want, mk func(op, text string) Command) (AdminState, Command, bool) {
	switch {
	case w.State == "" || w.State == s.Admin:
		return s.Admin, Command{}, false
	case w.State != StateReady && w.State != StateDrain && w.State != StateMaint:
		p.skips = append(p.skips, Skip{Server: name, Want: w.State, Reason: fmt.Sprintf("unknown state %q", w.State)})
		return s.Admin, Command{}, false
	case w.State == StateReady && !w.Verified:
		p.skips = append(p.skips, Skip{Server: name, Want: w.State, Reason: SkipNotVerified})
		return s.Admin, Command{}, false
	}
	c := mk(OpState, fmt.Sprintf("set server %s/%s state %s", p.backend, name, w.State))
	c.State = w.State
	return w.State, c, true
}

// servesAfter predicts Serving once admin and weight are set. Leaving maint makes a
// server UP at once, whatever its checks last said (DESIGN.md §4); leaving drain does
// not change its operational state.
func servesAfter(s Server, admin AdminState, weight int) bool {
	up := s.OpUp || (s.Admin == StateMaint && admin == StateReady)
	return admin == StateReady && up && weight > 0
}
