package main

import (
	"errors"
	"fmt"
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
	MinReady      int           `env:"COUCHWATCH_MIN_READY, default=1" desc:"servers that always stay serving, whatever couchwatch sees (at least 1); load drains also keep half the servers"`
	FlapWindow    time.Duration `env:"COUCHWATCH_FLAP_WINDOW, default=2m" desc:"a node that fails again within this time of coming back is flapping"`
	FlapHold      time.Duration `env:"COUCHWATCH_FLAP_HOLD, default=10s" desc:"first hold-down of a flapping node (kept out though it answers); doubles with each further flap"`
	FlapHoldMax   time.Duration `env:"COUCHWATCH_FLAP_HOLD_MAX, default=5m" desc:"longest hold-down of a flapping node"`
	Quiescence    time.Duration `env:"COUCHWATCH_QUIESCENCE, default=50ms" desc:"after a verdict changes, wait this long for the other nodes' verdicts to settle before acting (correlated failures get one decision)"`
	QuiescenceMax time.Duration `env:"COUCHWATCH_QUIESCENCE_MAX, default=500ms" desc:"never wait longer than this for verdicts to settle"`

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
	if c.FlapWindow < 0 || c.FlapHold < 0 || c.FlapHoldMax < c.FlapHold {
		errs = append(errs, fmt.Errorf("COUCHWATCH_FLAP_WINDOW and COUCHWATCH_FLAP_HOLD must be >= 0 and COUCHWATCH_FLAP_HOLD_MAX >= COUCHWATCH_FLAP_HOLD, got %s, %s, %s",
			c.FlapWindow, c.FlapHold, c.FlapHoldMax))
	}
	if c.Quiescence < 0 || c.QuiescenceMax < c.Quiescence || c.QuiescenceMax > 10*time.Second {
		errs = append(errs, fmt.Errorf("COUCHWATCH_QUIESCENCE must be >= 0 and COUCHWATCH_QUIESCENCE_MAX within [COUCHWATCH_QUIESCENCE, 10s], got %s, %s",
			c.Quiescence, c.QuiescenceMax))
	}
	return errors.Join(errs...)
}

// policyState is what the policy remembers between passes: the weights it asked for
// (to bound each step), when each server was last brought back (slow start), which
// servers it drained for load (so the budget does not hop between nodes), and each
// server's flapping history.
type policyState struct {
	weight       map[string]int // load weight (before the slow-start cap)
	servingSince map[string]time.Time
	wantReady    map[string]bool // present for every server wanted last pass: was it ready
	loadDrained  map[string]bool
	flap         map[string]flapState
}

func newPolicyState() policyState {
	return policyState{weight: map[string]int{}, servingSince: map[string]time.Time{},
		wantReady: map[string]bool{}, loadDrained: map[string]bool{}, flap: map[string]flapState{}}
}

// decision is the policy's output for one pass.
type decision struct {
	Desired         haproxy.Desired
	FailOpen        bool
	BudgetExhausted bool
}

// decide maps node statuses to the HAProxy state wanted. It is pure: the same inputs give
// the same output. servers maps node names to HAProxy server names (unmapped nodes are
// absent); obs is nil in agent mode (no runtime API). Each concern is its own file:
// fail open (policy_failopen.go), load drains within budget and capacity floor
// (policy_load.go), flapping hold-down (policy_flap.go), weights (policy_weight.go).
func decide(cfg PolicyConfig, backend string, statuses []checks.Status, servers map[string]string,
	obs *haproxy.Observed, prev policyState, now time.Time) (decision, policyState) {
	next := newPolicyState()
	d := decision{Desired: haproxy.Desired{Backend: backend, Servers: map[string]haproxy.Want{}}}
	if shouldFailOpen(statuses) {
		d.FailOpen, d.Desired.FailOpen = true, true
		d.Desired.Servers = failOpenWants(statuses, servers)
		return d, next
	}
	observed := byServer(obs)
	loadDrain, refused := loadDrains(cfg, statuses, servers, observed, prev)
	d.BudgetExhausted = len(refused) > 0
	d.Desired.Refused = refused
	answering := countAnswering(statuses, servers)
	for _, st := range statuses {
		srv, ok := servers[st.Node]
		if !ok {
			continue
		}
		w := wantFor(st, observed[srv], loadDrain[st.Node])
		if loadDrain[st.Node] {
			next.loadDrained[srv] = true
		}
		w, skip := holdFlapping(cfg, w, st, srv, prev, &next, answering, now)
		if skip != nil {
			d.Desired.Refused = append(d.Desired.Refused, *skip)
		}
		if w.State != "" {
			next.wantReady[srv] = w.State == haproxy.StateReady
		}
		if w.State == haproxy.StateReady {
			w.Weight = readyWeight(cfg, st, srv, obs != nil, prev, &next, now)
		}
		d.Desired.Servers[srv] = w
	}
	return d, next
}

// wantFor is the state wanted for one node's server from its verdict alone. An
// Unknown node's server is still watched (it counts toward the serving minimum when
// HAProxy has it serving) but nothing is asked of it: Unknown never acts.
func wantFor(st checks.Status, o haproxy.Server, loadDrain bool) haproxy.Want {
	w := haproxy.Want{Weight: -1, Verified: st.Verified, Detail: st.Reason}
	switch st.Verdict {
	case checks.Unknown:
		w.Reason = "unknown"
	case checks.Down:
		w.State, w.Reason, w.EndSessions = haproxy.StateMaint, "down", true
	case checks.Drain:
		w.State, w.Reason = haproxy.StateDrain, "maintenance"
		// Drain first; once HAProxy reports no connections left, maint.
		if o.Name != "" && o.Admin != haproxy.StateReady && o.CurConns == 0 {
			w.State = haproxy.StateMaint
		}
	case checks.Degraded:
		w.State, w.Reason = haproxy.StateReady, "saturated"
		if loadDrain {
			w.State = haproxy.StateDrain
		}
	case checks.Up:
		w.State, w.Reason = haproxy.StateReady, "up"
	}
	return w
}

// readyWeight is the weight of a server wanted ready (-1: leave it, in agent mode or
// with weights off), with the slow start of a returning server.
func readyWeight(cfg PolicyConfig, st checks.Status, srv string, runtime bool, prev policyState, next *policyState, now time.Time) int {
	since := prev.servingSince[srv] // zero on the first pass: already serving, full weight
	if wasReady, known := prev.wantReady[srv]; known && !wasReady {
		since = now // coming back: slow start
	}
	next.servingSince[srv] = since
	if !cfg.Weights || !runtime {
		return -1
	}
	w, load := nextWeight(cfg, st, prev, srv, since, now)
	next.weight[srv] = load
	return w
}

func byServer(obs *haproxy.Observed) map[string]haproxy.Server {
	out := map[string]haproxy.Server{}
	if obs != nil {
		for _, s := range obs.Servers {
			out[s.Name] = s
		}
	}
	return out
}

// countAnswering counts the mapped nodes whose verdict says they answer and serve.
func countAnswering(statuses []checks.Status, servers map[string]string) int {
	n := 0
	for _, st := range statuses {
		if _, ok := servers[st.Node]; ok && (st.Verdict == checks.Up || st.Verdict == checks.Degraded) {
			n++
		}
	}
	return n
}
