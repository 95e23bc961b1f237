package main

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// PolicyConfig sets how verdicts become HAProxy states and weights.
type PolicyConfig struct {
	Weights       bool          `env:"COUCHWATCH_WEIGHTS, default=true" desc:"steer load with HAProxy weights from the load score"`
	WeightMax     int           `env:"COUCHWATCH_WEIGHT_MAX, default=100" desc:"weight of an idle node (absolute, 1-256)"`
	WeightMin     int           `env:"COUCHWATCH_WEIGHT_MIN, default=10" desc:"weight of a saturated node that is not drained (absolute, 1-256)"`
	WeightStep    int           `env:"COUCHWATCH_WEIGHT_STEP, default=20" desc:"largest weight change per reconcile pass"`
	SlowStart     time.Duration `env:"COUCHWATCH_SLOWSTART, default=30s" desc:"ramp a returning node's weight from WEIGHT_MIN to its target over this time"`
	MaxLoadDrains int           `env:"COUCHWATCH_MAX_LOAD_DRAINS, default=1" desc:"most nodes drained at once because they are saturated (Degraded); 0 disables load drains"`
	MinReady      int           `env:"COUCHWATCH_MIN_READY, default=1" desc:"servers that always stay ready, whatever couchwatch sees (at least 1)"`

	// From checks.LoadConfig, set by main: the score range mapped to weights.
	loadLow, loadHigh float64
}

// Validate reports every problem at once.
func (c PolicyConfig) Validate() error {
	var errs []error
	if c.WeightMax < 1 || c.WeightMax > 256 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_WEIGHT_MAX must be 1..256, got %d", c.WeightMax))
	}
	if c.WeightMin < 1 || c.WeightMin > c.WeightMax {
		errs = append(errs, fmt.Errorf("COUCHWATCH_WEIGHT_MIN must be 1..COUCHWATCH_WEIGHT_MAX, got %d", c.WeightMin))
	}
	if c.WeightStep < 1 || c.WeightStep > 256 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_WEIGHT_STEP must be 1..256, got %d", c.WeightStep))
	}
	if c.SlowStart < 0 || c.SlowStart > time.Hour {
		errs = append(errs, fmt.Errorf("COUCHWATCH_SLOWSTART must be within [0, 1h], got %s", c.SlowStart))
	}
	if c.MaxLoadDrains < 0 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_MAX_LOAD_DRAINS must be >= 0, got %d", c.MaxLoadDrains))
	}
	if c.MinReady < 1 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_MIN_READY must be >= 1, got %d", c.MinReady))
	}
	return errors.Join(errs...)
}

// policyState is what the policy remembers between passes: the weights it asked for
// (to bound each step), when each server was last brought back (slow start), and which
// servers it drained for load (so the budget does not hop between nodes).
type policyState struct {
	weight       map[string]int // load weight (before the slow-start cap)
	servingSince map[string]time.Time
	wantReady    map[string]bool // present for every server wanted last pass: was it ready
	loadDrained  map[string]bool
}

func newPolicyState() policyState {
	return policyState{weight: map[string]int{}, servingSince: map[string]time.Time{},
		wantReady: map[string]bool{}, loadDrained: map[string]bool{}}
}

// decision is the policy's output for one pass.
type decision struct {
	Desired         haproxy.Desired
	FailOpen        bool
	BudgetExhausted bool
}

// decide maps node statuses to the HAProxy state wanted. It is pure: the same inputs give
// the same output. servers maps node names to HAProxy server names (unmapped nodes are
// absent); obs is nil in agent mode (no runtime API).
func decide(cfg PolicyConfig, backend string, statuses []checks.Status, servers map[string]string,
	obs *haproxy.Observed, prev policyState, now time.Time) (decision, policyState) {
	next := newPolicyState()
	d := decision{Desired: haproxy.Desired{Backend: backend, Servers: map[string]haproxy.Want{}}}

	observed := map[string]haproxy.Server{}
	if obs != nil {
		for _, s := range obs.Servers {
			observed[s.Name] = s
		}
	}

	answering, down := 0, 0
	for _, st := range statuses {
		switch st.Verdict {
		case checks.Up, checks.Degraded, checks.Drain:
			answering++
		case checks.Down:
			down++
		}
	}
	if answering == 0 && down > 0 {
		// No node answers at all: more likely our own view (network, credentials) than
		// the whole cluster. Hand every server back to HAProxy (DESIGN.md §3 rule 1).
		// A node that answers, even in maintenance, proves our view works: then the
		// last-ready rule in Plan keeps a server in rotation instead.
		d.FailOpen = true
		d.Desired.FailOpen = true
		for _, st := range statuses {
			if srv, ok := servers[st.Node]; ok {
				d.Desired.Servers[srv] = haproxy.Want{State: haproxy.StateReady, Weight: -1, Reason: "fail_open",
					Detail: "every node looks bad: handing servers back to HAProxy"}
			}
		}
		return d, next
	}

	// Load drains: the most saturated Degraded nodes, within the budget; nodes already
	// drained for load keep their place so the budget does not hop.
	var degraded []checks.Status
	for _, st := range statuses {
		if st.Verdict == checks.Degraded {
			if _, ok := servers[st.Node]; ok {
				degraded = append(degraded, st)
			}
		}
	}
	sort.SliceStable(degraded, func(i, j int) bool {
		a, b := degraded[i], degraded[j]
		pa, pb := prev.loadDrained[servers[a.Node]], prev.loadDrained[servers[b.Node]]
		if pa != pb {
			return pa
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Node < b.Node
	})
	loadDrain := map[string]bool{}
	for i, st := range degraded {
		if i < cfg.MaxLoadDrains {
			loadDrain[st.Node] = true
		} else {
			d.BudgetExhausted = true
		}
	}

	for _, st := range statuses {
		srv, ok := servers[st.Node]
		if !ok {
			continue
		}
		w := haproxy.Want{Weight: -1, Verified: st.Verified, Detail: st.Reason}
		switch st.Verdict {
		case checks.Unknown:
			// Unknown never triggers an action, but the server is watched: it counts
			// toward the serving minimum if HAProxy has it serving.
			d.Desired.Servers[srv] = haproxy.Want{Weight: -1, Reason: "unknown", Detail: st.Reason}
			continue
		case checks.Down:
			w.State, w.Reason, w.EndSessions = haproxy.StateMaint, "down", true
		case checks.Drain:
			w.State, w.Reason = haproxy.StateDrain, "maintenance"
			// Drain first; once HAProxy reports no connections left, maint.
			if o, ok := observed[srv]; ok && o.Admin != haproxy.StateReady && o.CurConns == 0 {
				w.State = haproxy.StateMaint
			}
		case checks.Degraded:
			if loadDrain[st.Node] {
				w.State, w.Reason = haproxy.StateDrain, "saturated"
				next.loadDrained[srv] = true
				break
			}
			w.State, w.Reason = haproxy.StateReady, "saturated"
		case checks.Up:
			w.State, w.Reason = haproxy.StateReady, "up"
		}
		next.wantReady[srv] = w.State == haproxy.StateReady
		if w.State == haproxy.StateReady {
			since := prev.servingSince[srv] // zero on the first pass: already serving, full weight
			if wasReady, known := prev.wantReady[srv]; known && !wasReady {
				since = now // coming back: slow start
			}
			next.servingSince[srv] = since
			if cfg.Weights && obs != nil {
				w.Weight, next.weight[srv] = nextWeight(cfg, st, prev, srv, since, now)
			}
		}
		d.Desired.Servers[srv] = w
	}
	return d, next
}

// targetWeight maps a load score to a weight: WeightMax at or below LoadLow, WeightMin
// at or above LoadHigh, linear between.
func targetWeight(cfg PolicyConfig, st checks.Status) int {
	if !st.ScoreKnown || cfg.loadHigh <= cfg.loadLow {
		if st.Verdict == checks.Degraded {
			return cfg.WeightMin
		}
		return cfg.WeightMax
	}
	f := (st.Score - cfg.loadLow) / (cfg.loadHigh - cfg.loadLow)
	f = math.Max(0, math.Min(1, f))
	return cfg.WeightMax - int(math.Round(f*float64(cfg.WeightMax-cfg.WeightMin)))
}

// nextWeight moves the load weight from its last value toward the target by at most
// WeightStep (a dead band ignores jitter); the weight applied is the load weight capped
// by the slow-start ramp of a returning server. It returns both.
func nextWeight(cfg PolicyConfig, st checks.Status, prev policyState, srv string, since, now time.Time) (applied, load int) {
	target := targetWeight(cfg, st)
	cur, ok := prev.weight[srv]
	if !ok {
		cur = target
	}
	deadband := max(1, (cfg.WeightMax-cfg.WeightMin)/20)
	load = cur
	if diff := target - cur; abs(diff) >= deadband || target == cfg.WeightMax || target == cfg.WeightMin {
		load = cur + max(-cfg.WeightStep, min(cfg.WeightStep, diff))
	}
	load = max(cfg.WeightMin, min(cfg.WeightMax, load))
	applied = load
	if !since.IsZero() && cfg.SlowStart > 0 {
		if el := now.Sub(since); el < cfg.SlowStart {
			ramp := cfg.WeightMin + int(float64(cfg.WeightMax-cfg.WeightMin)*float64(el)/float64(cfg.SlowStart))
			applied = min(applied, ramp)
		}
	}
	return applied, load
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
