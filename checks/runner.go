package checks

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/medic/couchwatch/couch"
)

// Observation is what one check learnt about a node. Only the fields of the check that ran
// are set.
type Observation struct {
	Up         *couch.Up
	Membership *couch.Membership
	System     *couch.System
	Tasks      []couch.ActiveTask
}

// Func is one check. The runner owns everything around it: deadline, timing, metrics,
// logging and hysteresis. A failing check is data (an error), not a program error.
type Func func(ctx context.Context, n *couch.Node) (Observation, error)

// CheckUp asks the node's /_up.
func CheckUp(ctx context.Context, n *couch.Node) (Observation, error) {
	up, err := n.Up(ctx)
	return Observation{Up: &up}, err
}

// CheckUpFresh asks the node's /_up on a new connection: the second opinion after a
// failed CheckUp.
func CheckUpFresh(ctx context.Context, n *couch.Node) (Observation, error) {
	up, err := n.UpFresh(ctx)
	return Observation{Up: &up}, err
}

// CheckMembership asks the node's /_membership.
func CheckMembership(ctx context.Context, n *couch.Node) (Observation, error) {
	m, err := n.Membership(ctx)
	return Observation{Membership: &m}, err
}

// CheckSystem asks the node's own /_node/_local/_system (never a peer's: a hung peer
// blocks that call for 20 s and more).
func CheckSystem(ctx context.Context, n *couch.Node) (Observation, error) {
	s, err := n.System(ctx)
	return Observation{System: &s}, err
}

// CheckActiveTasks asks the node's /_active_tasks.
func CheckActiveTasks(ctx context.Context, n *couch.Node) (Observation, error) {
	t, err := n.ActiveTasks(ctx)
	return Observation{Tasks: t}, err
}

// Status is a node's state as the policy sees it.
type Status struct {
	Node     string // COUCHDB_SERVERS name
	Verdict  Verdict
	Reason   string
	Since    time.Time // verdict since
	Verified bool      // just passed its checks (see nodeState.verified)
	// Failing: the last probe failed but not yet Fall in a row (not Down yet). Rising:
	// the last probe answered but not yet Rise in a row (not Up yet). The main loop
	// waits for such nodes before acting on another node's change: correlated changes
	// get one decision.
	Failing, Rising bool

	UpStatus couch.UpStatus // last /_up status answered, "" if none
	// LastError is the full error of the last failed /_up probe, "" once one succeeds.
	// couch removes secrets from it (password, session cookies, even ones the server
	// quoted back); Reason holds only its bounded class.
	LastError   string
	LastProbe   time.Time // last /_up probe, answered or not
	LastOK      time.Time // last /_up probe the node answered (ok or maintenance)
	LastOKSent  time.Time // when that probe was sent (LastOK is when its answer was read)
	LatencyEWMA time.Duration
	Deadline    time.Duration // the node's learnt /_up deadline
	Score       float64       // smoothed load score; valid if ScoreKnown
	ScoreKnown  bool
	ScoreSignal string // the signal that sets the score
	Signals     Signals

	ErlangName   string   // from /_node/_local
	Disagreement bool     // answers /_up but missing from a peer's all_nodes
	MissingFrom  []string // the peers (Erlang names) that do not list it

	// The auth-coupled hang (DESIGN.md §5): when authenticated probes time out, an
	// unauthenticated request tells a silent node from one whose authentication waits on
	// a hung peer (it still answers 401 at once).
	Silent      bool // authenticated and unauthenticated requests both got no answer
	AuthBlocked bool // authenticated requests time out, an unauthenticated one answers 401 fast

	// DataUnavailable: the node's shards cannot be read by the cluster (n=1 and the node
	// is down, hung, or in maintenance_mode = true rather than nolb).
	DataUnavailable bool
}

// Runner probes every node on its own schedule and keeps one Status per node.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	m       *Metrics
	clk     clock.Clock
	nodes   []*runNode
	changed chan struct{}

	mu       sync.Mutex
	clusterN int

	side sync.WaitGroup // the side probes (tasks.go) in flight
}

type runNode struct {
	n *couch.Node
	m *nodeMetrics

	sideBusy atomic.Bool // a side probe is in flight (tasks.go)

	// guarded by Runner.mu
	kick   context.CancelFunc // ends the wait for the next /_up probe; nil while probing
	st     nodeState
	dl     deadline
	status Status
	side   sideState
	damp   damper
}

// NewRunner returns a runner for nodes. clk may be nil (real time).
func NewRunner(cfg Config, nodes []*couch.Node, log *slog.Logger, m *Metrics, clk clock.Clock) *Runner {
	if clk == nil {
		clk = clock.RealClock{}
	}
	r := &Runner{cfg: cfg, log: log, m: m, clk: clk, changed: make(chan struct{}, 1)}
	now := clk.Now()
	for _, n := range nodes {
		rn := &runNode{n: n, m: m.initNode(n.Name()), st: newNodeState(cfg.Rise, cfg.Fall)}
		rn.status = Status{Node: n.Name(), Verdict: Unknown, Reason: "not enough probes yet", Since: now}
		r.nodes = append(r.nodes, rn)
	}
	return r
}

// Changed receives a value whenever a verdict changes (coalesced).
func (r *Runner) Changed() <-chan struct{} { return r.changed }

// ClusterN is the cluster's n as last read, 0 if unknown.
func (r *Runner) ClusterN() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clusterN
}

// Snapshot returns the status of every node, in configuration order.
func (r *Runner) Snapshot() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clk.Now()
	out := make([]Status, len(r.nodes))
	for i, rn := range r.nodes {
		s := rn.status
		s.Verified = rn.st.verified(now, r.maxProbeAge())
		s.Failing = rn.st.failRun > 0 && rn.st.base != Down
		s.Rising = rn.st.okRun > 0 && rn.st.base != Up
		s.MissingFrom = slices.Clone(s.MissingFrom)
		out[i] = s
	}
	return out
}

// maxProbeAge is how old the last ok may be for a node to count as verified.
func (r *Runner) maxProbeAge() time.Duration { return 2*r.cfg.Interval + r.cfg.Timeout }

// Run probes until ctx ends. Every node's schedule starts at once and they stay
// roughly in step, on purpose: probes that fall due together are served in one wake-up
// of the Go scheduler. Spreading 300 nodes' probes evenly over the interval measured
// 1.5-1.8x the CPU (one wake-up and netpoll round per probe) for no gain in memory.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, rn := range r.nodes {
		wg.Add(2)
		go func() { defer wg.Done(); r.upLoop(ctx, rn) }()
		go func() { defer wg.Done(); r.systemLoop(ctx, rn) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.membershipLoop(ctx) }()
	wg.Wait()
	r.side.Wait()
	return ctx.Err()
}

// probe runs f with its own deadline and records duration and failures.
func (r *Runner) probe(ctx context.Context, rn *runNode, name string, f Func, timeout time.Duration) (Observation, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := r.clk.Now()
	obs, err := f(ctx, rn.n)
	d := r.clk.Since(start)
	rn.m.observe(name, d)
	if err != nil {
		reason := couch.Classify(err)
		rn.m.fail(name, reason)
		r.log.Debug("probe failed", "node", rn.n.Name(), "probe", name, "reason", string(reason), "err", err)
	}
	return obs, d, err
}

// wait sleeps d or until ctx ends; it reports false when ctx ended.
func (r *Runner) wait(ctx context.Context, d time.Duration) bool {
	t := r.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	}
	return true
}

// upLoop probes /_up. Between probes it watches the probe's kept-alive connection
// (Config.Hold): when the node closes it, which is what a crash looks like, the node is
// probed at once instead of at the next interval.
//
// A failed probe is confirmed at once, not at the next interval: the node is asked again
// on a new connection with the same learnt deadline until it answers or has failed Fall
// probes in a row. A crash is then a reset and a refused connect within a millisecond;
// a hang is Fall deadlines of silence, each learnt from the node's own latency.
func (r *Runner) upLoop(ctx context.Context, rn *runNode) {
	var lastEarly time.Time
	for {
		fast, ok := r.probeUp(ctx, rn)
		if !ok {
			return
		}
		next := r.cfg.Interval
		if fast {
			next = r.cfg.FastInterval
		}
		// Wait for the next probe, unless a peer going down asks for one at once (kick).
		wctx, kicked := context.WithCancel(ctx)
		r.mu.Lock()
		rn.kick = kicked
		r.mu.Unlock()
		closed := false
		if r.cfg.Hold {
			closed = rn.n.Watch(wctx, next)
		} else {
			r.wait(wctx, next)
		}
		r.mu.Lock()
		rn.kick = nil
		r.mu.Unlock()
		kicked()
		if ctx.Err() != nil {
			return
		}
		if !closed {
			continue
		}
		// Closed early. A node (or something in between) that closes idle
		// connections faster than the probe interval would otherwise be probed in a
		// tight loop: one early probe per interval.
		now := r.clk.Now()
		if now.Sub(lastEarly) < r.cfg.Interval {
			if !r.wait(ctx, next) {
				return
			}
		}
		lastEarly = now
		r.log.Debug("probe connection closed by the node: probing at once", "node", rn.n.Name())
	}
}

// probeUp asks /_up until the node answers or has failed Fall probes in a row, without
// waiting for the next interval between them. The first probe goes on the held
// connection; each later one, the second opinion, on a new connection, sent as soon as
// the one before failed (a reset, then a refused connect: two failures within a
// millisecond) or has been silent for half the node's learnt deadline D. No probe is
// abandoned: every one has until the last has had its full D, and an answer from any of
// them counts, so a node merely slower than its deadline is not failed; a silent node is
// down (Fall 2) 1.5 D after the first probe was sent, the first probe having waited 1.5 D
// and the second D. The first silence also sends the unauthenticated knock (tasks.go)
// beside the second opinion; timeouts are recorded with its answer. It reports whether
// the node is in transition (probe again at the fast interval) and false for ok when ctx
// ended.
func (r *Runner) probeUp(ctx context.Context, rn *runNode) (fast, ok bool) {
	r.mu.Lock()
	dl := rn.dl.get(r.cfg.TimeoutMin, r.cfg.Timeout)
	r.mu.Unlock()
	fall := max(r.cfg.Fall, 1)
	early := dl / 2                                         // silence that sends the next opinion
	end := time.Now().Add(time.Duration(fall-1)*early + dl) // when every probe has had its due
	pctx, cancel := context.WithDeadline(ctx, end)
	defer cancel() // probes still in flight once the outcome is known
	type result struct {
		i     int
		up    couch.Up
		start time.Time
		d     time.Duration
		err   error
	}
	results := make(chan result, fall) // one send per probe: never blocks
	launch := func(i int) {
		check := CheckUp
		if i > 0 {
			check = CheckUpFresh
		}
		go func() {
			start := r.clk.Now()
			obs, err := check(pctx, rn.n)
			res := result{i: i, start: start, d: r.clk.Since(start), err: err}
			if obs.Up != nil {
				res.up = *obs.Up
			}
			results <- res
		}()
	}
	var knocked chan Knock // nil until the first silence or timeout
	knock := KnockNone     // its answer, once known
	var pending []error    // timeouts waiting for the knock's answer
	startKnock := func() {
		if knocked == nil {
			knocked = make(chan Knock, 1)
			go func() { knocked <- r.knock(pctx, rn, time.Until(end)) }()
		}
	}
	launched, returned := 1, 0
	launch(0)
	timer := r.clk.NewTimer(early)
	defer timer.Stop()
	next := func() {
		if launched < fall {
			launch(launched)
			launched++
			timer.Reset(early)
		}
	}
	down := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return rn.st.base == Down
	}
	record := func(err error, k Knock) {
		rn.m.fail(ProbeUp, couch.Classify(err))
		fast = r.recordUp(rn, couch.Up{}, 0, err, k)
	}
	for {
		select {
		case <-ctx.Done():
			return false, false
		case res := <-results:
			if ctx.Err() != nil {
				return false, false
			}
			rn.m.observe(ProbeUp, res.d)
			if res.err == nil {
				r.mu.Lock()
				rn.status.LastOKSent = res.start
				r.mu.Unlock()
				return r.recordUp(rn, res.up, res.d, nil, KnockNone), true
			}
			returned++
			switch {
			case couch.Classify(res.err) != couch.ReasonTimeout:
				record(res.err, KnockNone)
			case knock != KnockNone:
				record(res.err, knock)
			default:
				pending = append(pending, res.err)
				startKnock()
			}
			if down() || returned == fall && len(pending) == 0 {
				return fast, true
			}
			if res.i == launched-1 {
				next() // the newest failed: the next opinion at once
			}
		case k := <-knocked:
			if ctx.Err() != nil {
				return false, false
			}
			knock = k
			for _, err := range pending {
				record(err, k)
			}
			pending = nil
			if down() || returned == fall {
				return fast, true
			}
		case <-timer.C():
			if launched < fall {
				startKnock() // silent so far: its answer is ready when the probes end
				next()
			}
		}
	}
}

// recordUp feeds one /_up result to the node's state machine and reports whether the
// node is in transition (probe again at the fast interval, like HAProxy's fastinter).
func (r *Runner) recordUp(rn *runNode, up couch.Up, d time.Duration, err error, knock Knock) bool {
	r.mu.Lock()
	now := r.clk.Now()
	wasUp := rn.st.base == Up
	wasBlocked, wasSilent := rn.st.authBlocked, rn.st.silent
	rn.st.observeUp(up, err, knock, now)
	r.logAuthLocked(rn, wasBlocked, wasSilent)
	rn.status.LastProbe = now
	rn.status.LastError = ""
	if err != nil {
		rn.status.LastError = err.Error()
	}
	if err == nil {
		if wasUp && rn.st.base == Up {
			// Learnt only from a node that is up: the first answers of a node (coming
			// back) carry the login and connection set-up.
			rn.dl.observe(d)
		}
		rn.status.UpStatus, rn.status.LastOK = up.Status, now
		a := r.cfg.Load.LatencyEWM
		if rn.status.LatencyEWMA == 0 {
			rn.status.LatencyEWMA = d
		} else {
			rn.status.LatencyEWMA = time.Duration(a*float64(d) + (1-a)*float64(rn.status.LatencyEWMA))
		}
		rn.m.latency.set(rn.status.LatencyEWMA.Seconds())
	}
	if err == nil && up.Status == couch.StatusOK {
		rn.m.up.set(1)
	} else {
		rn.m.up.set(0)
	}
	if rn.st.base == Down {
		rn.status.ScoreKnown, rn.status.Score = false, 0
		rn.damp.reset()
	}
	if rn.st.base != Up {
		rn.dl.forget() // a node that comes back is learnt again
	}
	rn.status.Deadline = rn.dl.get(r.cfg.TimeoutMin, r.cfg.Timeout)
	changed := r.updateVerdictLocked(rn, now)
	fast := (rn.st.failRun > 0 && rn.st.base != Down) || (rn.st.okRun > 0 && rn.st.okRun < r.cfg.Rise && rn.st.base != Up) ||
		(rn.st.maint != "" && rn.st.okStatusRun > 0)
	r.mu.Unlock()
	if changed {
		r.notify()
	}
	return fast
}

// updateVerdictLocked recomputes the verdict and logs and counts a change.
func (r *Runner) updateVerdictLocked(rn *runNode, now time.Time) bool {
	v, reason := rn.st.verdict()
	r.setFaultFlagsLocked(rn)
	if v == Degraded && !rn.st.authBlocked {
		reason = "saturated: load score " + strconv.FormatFloat(rn.status.Score, 'f', 2, 64) + " (" + rn.status.ScoreSignal + ")"
	}
	old := rn.status.Verdict
	rn.status.Reason = reason
	if v == old {
		return false
	}
	rn.status.Verdict, rn.status.Since = v, now
	if v == Down {
		// Is it this node or our own view? Ask every other node now rather than at its
		// next interval: the main loop acts as soon as each has answered or failed
		// (cmd/couchwatch loop.go), instead of waiting out the settling window.
		for _, other := range r.nodes {
			if other != rn && other.kick != nil {
				other.kick()
			}
		}
	}
	rn.m.setVerdict(v)
	if v == Down && rn.status.LastError != "" {
		r.log.Info("node verdict changed", "node", rn.n.Name(), "from", old.String(), "to", v.String(), "reason", reason,
			"err", rn.status.LastError)
	} else {
		r.log.Info("node verdict changed", "node", rn.n.Name(), "from", old.String(), "to", v.String(), "reason", reason)
	}
	return true
}

func (r *Runner) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// systemLoop samples the node's saturation signals.
func (r *Runner) systemLoop(ctx context.Context, rn *runNode) {
	for {
		if !r.wait(ctx, r.cfg.SystemInterval) {
			return
		}
		r.mu.Lock()
		down := rn.st.base != Up
		r.mu.Unlock()
		if down {
			continue
		}
		// Tasks and the JS process limit are asked on the side: /_active_tasks is
		// cluster-wide and blocks while any peer hangs, so it must never hold up
		// this node's sample or verdict (tasks.go).
		r.startSide(ctx, rn)
		sysObs, d, sysErr := r.probe(ctx, rn, ProbeSystem, CheckSystem, r.cfg.SystemTimeout)
		if ctx.Err() != nil {
			return
		}
		if sysErr != nil {
			continue // keep the last score: a failed sample says nothing about load
		}
		r.recordSystem(rn, sysObs.System, d)
	}
}

func (r *Runner) recordSystem(rn *runNode, sys *couch.System, d time.Duration) {
	r.mu.Lock()
	now := r.clk.Now()
	sig := SignalsFrom(sys, r.freshTasksLocked(rn, now), rn.status.LatencyEWMA)
	sig.JSLimit = rn.side.jsLimit
	sig = rn.damp.damp(r.cfg.Load, sig, d, now)
	raw, signal := r.cfg.Load.Score(sig)
	rn.st.load.observe(r.cfg.Load, raw, now)
	rn.status.Score, rn.status.ScoreKnown, rn.status.ScoreSignal = rn.st.load.score, true, signal
	rn.status.Signals = sig
	rn.m.setSignals(sig, rn.st.load.score)
	changed := r.updateVerdictLocked(rn, now)
	r.mu.Unlock()
	if changed {
		r.notify()
	}
}

// membershipLoop asks every node for its membership (and once for its Erlang name and
// the cluster's n) and compares the answers.
func (r *Runner) membershipLoop(ctx context.Context) {
	for {
		r.membershipPass(ctx)
		if !r.wait(ctx, r.cfg.MembershipInterval) {
			return
		}
	}
}

// membershipWorkers bounds the /_membership calls in flight: with N nodes each reply
// holds 2N names, so asking every node at once would hold N² names at once.
const membershipWorkers = 8

func (r *Runner) membershipPass(ctx context.Context) {
	// Erlang names first (learnt once: a node's name does not change while it runs),
	// so that this pass can look every name up.
	names := make([]string, len(r.nodes))
	r.mu.Lock()
	for i, rn := range r.nodes {
		names[i] = rn.status.ErlangName
	}
	r.mu.Unlock()
	if slices.Contains(names, "") {
		r.forEach(ctx, func(i int, rn *runNode) {
			if names[i] != "" {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, r.cfg.SystemTimeout)
			defer cancel()
			if got, err := rn.n.LocalName(pctx); err == nil {
				names[i] = got
			}
		})
	}
	index := make(map[string]int, len(names))
	for i, name := range names {
		if name != "" {
			index[name] = i
		}
	}
	// lists[j] says which nodes peer j's all_nodes names (nil: no answer).
	lists := make([]bitset, len(r.nodes))
	r.forEach(ctx, func(j int, rn *runNode) {
		obs, _, err := r.probe(ctx, rn, ProbeMembership, CheckMembership, r.cfg.SystemTimeout)
		if err != nil {
			return
		}
		set := newBitset(len(r.nodes))
		for _, a := range obs.Membership.AllNodes {
			if i, ok := index[a]; ok {
				set.add(i)
			}
		}
		lists[j] = set
	})
	if ctx.Err() != nil {
		return
	}
	n := r.readClusterN(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	if n > 0 {
		r.clusterN = n
	}
	r.m.clusterN.Set(float64(r.clusterN))
	copies := 0
	if r.clusterN > 0 {
		copies = r.clusterN - 1
	}
	for i, rn := range r.nodes {
		rn.status.ErlangName = names[i]
		rn.m.copies.set(float64(copies))
		if rn.st.base != Up {
			lists[i] = nil // only peers that are up have a say
		}
	}
	for i, rn := range r.nodes {
		me := names[i]
		var missing []string
		if me != "" && rn.st.base == Up {
			for j, set := range lists {
				if i != j && set != nil && !set.has(i) {
					missing = append(missing, names[j])
				}
			}
		}
		was := rn.status.Disagreement
		rn.status.Disagreement = len(missing) > 0
		rn.status.MissingFrom = missing
		val := 0.0
		if rn.status.Disagreement {
			val = 1
		}
		rn.m.disagreement.set(val)
		if was != rn.status.Disagreement {
			r.log.Warn("membership disagreement changed", "node", rn.n.Name(), "disagreement", rn.status.Disagreement,
				"reason", "missing from all_nodes of "+strings.Join(missing, ","))
		}
	}
}

// forEach calls f for every node on membershipWorkers goroutines and waits for them.
func (r *Runner) forEach(ctx context.Context, f func(i int, rn *runNode)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(membershipWorkers, len(r.nodes)) {
		wg.Go(func() {
			for i := range next {
				f(i, r.nodes[i])
			}
		})
	}
	for i := range r.nodes {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}

// bitset is a set of node indices.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) add(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }

// readClusterN asks one node that answers for the cluster's n (the same on every node).
func (r *Runner) readClusterN(ctx context.Context) int {
	for _, rn := range r.nodes {
		r.mu.Lock()
		up := rn.st.base == Up
		r.mu.Unlock()
		if !up {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, r.cfg.SystemTimeout)
		v, err := rn.n.ConfigValue(pctx, "cluster", "n")
		cancel()
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			return n
		}
		return 0
	}
	return 0
}
