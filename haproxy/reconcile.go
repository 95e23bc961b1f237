package haproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrCommandsFailed wraps a pass's error when HAProxy refused commands (each already
// logged by the Reconciler, with its command): callers need not log them again.
var ErrCommandsFailed = errors.New("haproxy refused commands")

// Reconciler runs level-triggered passes: read HAProxy's state, plan, apply. It never
// trusts what it set before: every pass starts from what HAProxy reports.
type Reconciler struct {
	rt  *Runtime
	b   Budget
	log *slog.Logger
	m   *Metrics

	mu    sync.Mutex          // serialises passes and guards the fields below
	known map[string]struct{} // servers with per-server gauges
	// What the last pass skipped and, in dry-run mode, would have sent: a refusal or a
	// dry-run command repeats every pass, and is logged and counted only when it first
	// appears (once per episode).
	lastSkips, lastDry map[string]bool
}

// Result is what one pass saw and did.
type Result struct {
	Observed Observed // HAProxy's state before the commands
	Commands []Command
	Skipped  []Skip
}

// NewReconciler returns a Reconciler; log and m may be nil.
func NewReconciler(rt *Runtime, b Budget, log *slog.Logger, m *Metrics) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m, _ = NewMetrics(nil) // not registered: cannot fail
	}
	return &Reconciler{rt: rt, b: b, log: log, m: m, known: map[string]struct{}{}}
}

// Reconcile runs one pass. In dry-run mode it logs the commands instead of sending
// them. Error replies from HAProxy are returned (joined), each naming its command.
func (r *Reconciler) Reconcile(ctx context.Context, d Desired) (Result, error) {
	return r.ReconcileWith(ctx, func(Observed) Desired { return d })
}

// ReconcileWith is Reconcile where the desired state depends on what HAProxy reports
// (connections left on a draining server, addresses to map nodes by): decide is called
// once with the state just read, and the pass reads HAProxy only once. The backend read
// is Config.Backend. Take-outs are sent only after the replies to the first phase
// (readies, weights) are in, and only as many as those replies allow.
func (r *Reconciler) ReconcileWith(ctx context.Context, decide func(Observed) Desired) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	defer func() { r.m.ReconcileDuration.Observe(time.Since(start).Seconds()) }()

	backend := r.rt.cfg.Backend
	obs, err := r.rt.State(ctx, backend)
	if err != nil {
		r.m.Up.Set(0)
		r.m.ReconcileErrors.Inc()
		return Result{}, fmt.Errorf("reconcile %s: %w", backend, err)
	}
	r.m.Up.Set(1)
	r.observe(obs)
	d := decide(obs)
	d.Backend = backend
	cmds, skips := Plan(d, obs, r.b)
	res := Result{Observed: obs, Skipped: append(skips, d.Refused...)}
	if r.rt.cfg.DryRun || len(cmds) == 0 {
		r.noteSkips(backend, res.Skipped)
		res.Commands = cmds
		r.dryRun(backend, cmds)
		r.m.LastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
		return res, nil
	}
	sent, results, late, err := r.applyPhases(ctx, cmds)
	res.Commands, res.Skipped = sent, append(res.Skipped, late...)
	r.noteSkips(backend, res.Skipped)
	return res, r.record(backend, sent, results, err)
}

// applyPhases sends the first phase, then the take-outs its replies allow.
func (r *Reconciler) applyPhases(ctx context.Context, cmds []Command) (sent []Command, results []error, skips []Skip, err error) {
	first, takeOuts := SplitPhases(cmds)
	results, err = r.rt.apply(ctx, first)
	if err != nil || len(takeOuts) == 0 {
		return first, results, nil, err
	}
	admitted, skips := AdmitTakeOuts(first, results, takeOuts)
	if len(admitted) == 0 {
		return first, results, skips, nil
	}
	more, err := r.rt.apply(ctx, admitted)
	return append(first, admitted...), append(results, more...), skips, err
}

// record logs and counts each command's outcome and returns the pass's error.
func (r *Reconciler) record(backend string, cmds []Command, results []error, err error) error {
	if err != nil {
		r.m.Up.Set(0)
	}
	var failed []error
	for i, c := range cmds {
		var cerr error
		if i < len(results) {
			cerr = results[i]
		}
		switch {
		case cerr != nil && err != nil && !errors.Is(cerr, ErrReply):
			// Not answered: the transport error is returned (and logged by the caller) once.
			r.m.Commands.WithLabelValues(c.Op, "error").Inc()
		case cerr != nil:
			r.log.Error("haproxy command failed", "backend", backend, "server", c.Server,
				"reason", c.Reason, "detail", c.Detail, "cmd", c.Text, "err", cerr)
			r.m.Commands.WithLabelValues(c.Op, "error").Inc()
			failed = append(failed, cerr)
		default:
			// State changes are actions and logged; a weight step is one of many in a
			// ramp (slow start, load) and only logged at debug: its current value is
			// couchwatch_haproxy_server_weight.
			lvl := slog.LevelInfo
			if c.Op == OpWeight {
				lvl = slog.LevelDebug
			}
			r.log.Log(context.Background(), lvl, "haproxy command", "backend", backend, "server", c.Server,
				"reason", c.Reason, "detail", c.Detail, "cmd", c.Text)
			r.m.Commands.WithLabelValues(c.Op, "ok").Inc()
			if c.Op == OpState && (c.State == StateDrain || c.State == StateMaint) && contains(drainReasons(), c.Reason) {
				r.m.Drains.WithLabelValues(c.Server, c.Reason).Inc()
			}
		}
	}
	switch {
	case err != nil:
		r.m.ReconcileErrors.Inc()
		return fmt.Errorf("reconcile %s: %w", backend, err)
	case len(failed) > 0:
		r.m.ReconcileErrors.Inc()
		return fmt.Errorf("reconcile %s: %w: %d of %d: %w", backend, ErrCommandsFailed, len(failed), len(cmds), errors.Join(failed...))
	}
	r.m.LastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	return nil
}

// noteSkips logs and counts each skip once per episode: when it first appears.
func (r *Reconciler) noteSkips(backend string, skips []Skip) {
	seen := make(map[string]bool, len(skips))
	for _, s := range skips {
		key := s.Server + "\x00" + string(s.Want) + "\x00" + s.Reason
		seen[key] = true
		if r.lastSkips[key] {
			continue
		}
		r.log.Warn("haproxy change skipped", "backend", backend, "server", s.Server,
			"want", string(s.Want), "reason", s.Reason)
		if label := SkipLabel(s.Reason); label != "" {
			r.m.Skipped.WithLabelValues(label).Inc()
		}
	}
	r.lastSkips = seen
}

// dryRun logs, in dry-run mode, each command that would be sent, once per episode.
func (r *Reconciler) dryRun(backend string, cmds []Command) {
	if !r.rt.cfg.DryRun || len(cmds) == 0 {
		r.lastDry = nil
		return
	}
	seen := make(map[string]bool, len(cmds))
	for _, c := range cmds {
		seen[c.Text] = true
		if !r.lastDry[c.Text] {
			r.log.Info("haproxy command (dry run, not sent)", "backend", backend, "server", c.Server,
				"reason", c.Reason, "detail", c.Detail, "cmd", c.Text)
		}
		r.m.Commands.WithLabelValues(c.Op, "dry_run").Inc()
	}
	r.lastDry = seen
}

// observe sets the per-server gauges from what HAProxy reports and drops the
// series of servers that disappeared.
func (r *Reconciler) observe(o Observed) {
	seen := make(map[string]struct{}, len(o.Servers))
	for _, s := range o.Servers {
		seen[s.Name] = struct{}{}
		r.m.ServerWeight.WithLabelValues(s.Name).Set(float64(s.Weight))
		r.m.ServerConnections.WithLabelValues(s.Name).Set(float64(s.CurConns))
		for _, reason := range drainReasons() {
			r.m.Drains.WithLabelValues(s.Name, reason) // exported at 0 before the first drain
		}
		for _, st := range adminStates() {
			v := 0.0
			if s.Admin == st {
				v = 1
			}
			r.m.ServerAdminState.WithLabelValues(s.Name, string(st)).Set(v)
		}
	}
	for name := range r.known {
		if _, ok := seen[name]; !ok {
			r.m.ServerWeight.DeleteLabelValues(name)
			r.m.ServerConnections.DeleteLabelValues(name)
			for _, reason := range drainReasons() {
				r.m.Drains.DeleteLabelValues(name, reason)
			}
			for _, st := range adminStates() {
				r.m.ServerAdminState.DeleteLabelValues(name, string(st))
			}
		}
	}
	r.known = seen
}

// SkipLabel is the metric label of a skip reason ("" for reasons not counted: a
// server HAProxy lacks, an invalid weight or state, which are configuration errors).
func SkipLabel(reason string) string {
	switch reason {
	case SkipLastReady, SkipReadyRefused:
		return "last_ready"
	case SkipNotVerified:
		return "not_verified"
	case SkipBudget, SkipCapacity:
		return "budget"
	case SkipFlapping:
		return "flapping"
	}
	return ""
}
