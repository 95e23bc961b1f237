package haproxy

import (
	"errors"
	"fmt"
	"testing"
)

// planCase decodes fuzz bytes into an observed backend, a desired state, a budget and
// the set of commands HAProxy refuses (by position in the order they are sent).
func planCase(data []byte) (Desired, Observed, Budget, func(i int) bool) {
	at := 0
	next := func(n int) int {
		if at >= len(data) {
			return 0
		}
		v := int(data[at]) % n
		at++
		return v
	}
	states := []AdminState{StateReady, StateDrain, StateMaint, ""}
	weights := []int{-1, 0, 1, 7}
	o := Observed{Backend: "b"}
	d := Desired{Backend: "b", Servers: map[string]Want{}, FailOpen: next(8) == 0}
	for i := range 2 + next(4) {
		name := fmt.Sprintf("s%d", i)
		s := Server{Name: name, Admin: states[next(3)], OpUp: next(3) != 0, UWeight: weights[1+next(3)], IWeight: 1 + next(2)}
		if s.Admin == StateMaint {
			s.OpUp = false // HAProxy stops a server in maint
		}
		s.CurConns = next(2)
		o.Servers = append(o.Servers, s)
		if next(4) == 0 {
			continue // not watched
		}
		d.Servers[name] = Want{State: states[next(4)], Weight: weights[next(4)], Verified: next(2) == 0, EndSessions: next(2) == 0}
	}
	b := Budget{MinReady: next(4)}
	refused := uint64(0)
	for range 8 {
		refused = refused<<8 | uint64(next(256))
	}
	return d, o, b, func(i int) bool { return i < 64 && refused&(1<<i) != 0 }
}

// simulate applies one accepted command to the servers the way HAProxy 2.6 does.
func simulate(servers map[string]Server, c Command) {
	s := servers[c.Server]
	switch c.Op {
	case OpState:
		if s.Admin == StateMaint && c.State != StateMaint {
			s.OpUp = true // leaving maint: UP at once (DESIGN.md §4)
		}
		if c.State == StateMaint {
			s.OpUp = false
		}
		s.Admin = c.State
	case OpWeight:
		s.UWeight = c.Weight
	}
	servers[c.Server] = s
}

func servingCount(servers map[string]Server, d Desired) int {
	n := 0
	for name := range d.Servers {
		if s, ok := servers[name]; ok && Serving(s) {
			n++
		}
	}
	return n
}

// checkPlan runs one pass as Reconciler does (first phase, replies, admitted take-outs),
// with HAProxy refusing some commands, and checks the invariants after every command:
// never fewer servers serving than the minimum (or than before, if fewer were), never
// "ready" unverified outside fail-open.
func checkPlan(t *testing.T, d Desired, o Observed, b Budget, refuse func(int) bool) {
	t.Helper()
	servers := map[string]Server{}
	for _, s := range o.Servers {
		servers[s.Name] = s
	}
	floor := min(servingCount(servers, d), max(1, b.MinReady))
	cmds, _ := Plan(d, o, b)
	first, takeOuts := SplitPhases(cmds)
	sent := 0
	send := func(batch []Command) []error {
		res := make([]error, len(batch))
		for i, c := range batch {
			if err := checkCommand(c); err != nil {
				t.Fatalf("Plan emitted a command Apply refuses: %v", err)
			}
			if c.Op == OpState && c.State == StateReady && !d.Servers[c.Server].Verified && !d.FailOpen {
				t.Fatalf("unverified ready outside fail-open: %+v", c)
			}
			if refuse(sent) {
				res[i] = errors.New("refused")
			} else {
				simulate(servers, c)
			}
			sent++
			if n := servingCount(servers, d); n < floor {
				t.Fatalf("after command %d %q: %d serving, floor %d\nplan %q", sent, c.Text, n, floor, texts(cmds))
			}
		}
		return res
	}
	results := send(first)
	admitted, _ := AdmitTakeOuts(first, results, takeOuts)
	send(admitted)
}

func texts(cmds []Command) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.Text
	}
	return out
}

// Plan's invariants over random observed states, budgets and refused commands.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 0, 1, 1, 1, 1, 2, 1, 1, 0, 1, 1, 0, 0, 1, 2, 1, 0, 1, 1, 2, 0, 0, 1, 255})
	f.Add([]byte{3, 0, 1, 2, 0, 1, 1, 3, 0, 0, 1, 1, 0, 1, 2, 2, 1, 0, 2, 0, 0, 1, 2, 2, 1, 0, 2, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, o, b, refuse := planCase(data)
		checkPlan(t, d, o, b, refuse)
	})
}

// The same invariants, exhaustively over the small cases and with each command of a
// plan refused in turn.
func TestPlanInvariant(t *testing.T) {
	for seed := range 20000 {
		data := make([]byte, 40)
		x := uint64(seed)*0x9E3779B97F4A7C15 + 1
		for i := range data {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			data[i] = byte(x)
		}
		d, o, b, _ := planCase(data)
		cmds, _ := Plan(d, o, b)
		for i := range len(cmds) + 1 {
			checkPlan(t, d, o, b, func(j int) bool { return j == i })
		}
	}
}
