package haproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

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
	// dry-run command repeats every pass, and is logged only when it first appears.
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
		m = NewMetrics(nil)
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
// is Config.Backend.
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
	res := Result{Observed: obs, Commands: cmds, Skipped: skips}
	seenSkips := make(map[string]bool, len(skips))
	for _, s := range skips {
		key := s.Server + "\x00" + string(s.Want) + "\x00" + s.Reason
		seenSkips[key] = true
		if !r.lastSkips[key] {
			r.log.Warn("haproxy change skipped", "backend", d.Backend, "server", s.Server,
				"want", string(s.Want), "reason", s.Reason)
		}
		if label := skipLabel(s.Reason); label != "" {
			r.m.Skipped.WithLabelValues(label).Inc()
		}
	}
	r.lastSkips = seenSkips
	if len(cmds) == 0 {
		r.lastDry = nil
		r.m.LastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
		return res, nil
	}
	if r.rt.cfg.DryRun {
		seenDry := make(map[string]bool, len(cmds))
		for _, c := range cmds {
			seenDry[c.Text] = true
			if !r.lastDry[c.Text] {
				r.log.Info("haproxy command (dry run, not sent)", "backend", d.Backend, "server", c.Server,
					"reason", c.Reason, "detail", c.Detail, "cmd", c.Text)
			}
			r.m.Commands.WithLabelValues(c.Op, "dry_run").Inc()
		}
		r.lastDry = seenDry
		r.m.LastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
		return res, nil
	}

	results, err := r.rt.apply(ctx, cmds)
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
			r.log.Error("haproxy command failed", "backend", d.Backend, "server", c.Server,
				"reason", c.Reason, "detail", c.Detail, "cmd", c.Text, "err", cerr)
			r.m.Commands.WithLabelValues(c.Op, "error").Inc()
			failed = append(failed, cerr)
		default:
			r.log.Info("haproxy command", "backend", d.Backend, "server", c.Server,
				"reason", c.Reason, "detail", c.Detail, "cmd", c.Text)
			r.m.Commands.WithLabelValues(c.Op, "ok").Inc()
			if s := stateOf(c); c.Op == "state" && (s == StateDrain || s == StateMaint) && contains(drainReasons(), c.Reason) {
				r.m.Drains.WithLabelValues(c.Server, c.Reason).Inc()
			}
		}
	}
	if err != nil {
		r.m.ReconcileErrors.Inc()
		return res, fmt.Errorf("reconcile %s: %w", d.Backend, err)
	}
	if len(failed) > 0 {
		r.m.ReconcileErrors.Inc()
		return res, fmt.Errorf("reconcile %s: %d of %d commands failed: %w", d.Backend, len(failed), len(cmds), errors.Join(failed...))
	}
	r.m.LastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	return res, nil
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

func skipLabel(reason string) string {
	switch reason {
	case SkipLastReady:
		return "last_ready"
	case SkipNotVerified:
		return "not_verified"
	}
	if strings.Contains(reason, "budget") {
		return "budget"
	}
	return ""
}
