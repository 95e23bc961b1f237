package haproxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/internal/promreg"
)

// Metrics are the [haproxy] families of docs/metrics.md except couchwatch_fail_open*
// and couchwatch_drain_budget_exhausted, which cmd owns.
type Metrics struct {
	Up                prometheus.Gauge
	Commands          *prometheus.CounterVec // op, result
	ReconcileDuration prometheus.Histogram
	LastSuccess       prometheus.Gauge
	ReconcileErrors   prometheus.Counter
	ServerWeight      *prometheus.GaugeVec   // server
	ServerAdminState  *prometheus.GaugeVec   // server, state
	ServerConnections *prometheus.GaugeVec   // server
	Skipped           *prometheus.CounterVec // reason
	Drains            *prometheus.CounterVec // server, reason
	AgentReplies      *prometheus.CounterVec // reply
	AgentRefused      *prometheus.CounterVec // reason
}

// Bounded label values (functions, not package variables: no shared mutable state).
func commandOps() []string     { return []string{OpState, OpWeight, OpAddr, OpShutdown} }
func commandResults() []string { return []string{"ok", "error", "dry_run"} }
func skipReasons() []string    { return []string{"last_ready", "not_verified", "budget", "flapping"} }
func agentWords() []string     { return []string{"up", "down", "drain", "maint", "ready"} }
func adminStates() []AdminState {
	return []AdminState{StateReady, StateDrain, StateMaint}
}
func drainReasons() []string { return []string{"down", "maintenance", "saturated"} }

// NewMetrics creates the families and registers them with reg (nil: not registered);
// every family that cannot be registered is in the error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couchwatch_haproxy_up",
			Help: "1 if the last runtime API exchange with HAProxy succeeded.",
		}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_haproxy_commands_total",
			Help: "Runtime API commands, by operation and result.",
		}, []string{"op", "result"}),
		ReconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "couchwatch_haproxy_reconcile_duration_seconds",
			Help:    "Duration of one reconcile pass: read state, plan, apply.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couchwatch_haproxy_last_reconcile_success_timestamp_seconds",
			Help: "Unix time of the last reconcile pass that ended without error.",
		}),
		ReconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couchwatch_haproxy_reconcile_errors_total",
			Help: "Reconcile passes that ended in error.",
		}),
		ServerWeight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "couchwatch_haproxy_server_weight",
			Help: "Weight HAProxy reports for the server.",
		}, []string{"server"}),
		ServerAdminState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "couchwatch_haproxy_server_admin_state",
			Help: "One-hot admin state HAProxy reports for the server.",
		}, []string{"server", "state"}),
		ServerConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "couchwatch_haproxy_server_connections",
			Help: "Current sessions HAProxy reports for the server (scur).",
		}, []string{"server"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_haproxy_skipped_total",
			Help: "Changes refused by the safety rules, by reason.",
		}, []string{"reason"}),
		Drains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_haproxy_drains_total",
			Help: "Servers taken out of rotation (drain or maint), by reason.",
		}, []string{"server", "reason"}),
		AgentReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_agent_replies_total",
			Help: "Agent-check replies sent, by first word.",
		}, []string{"reply"}),
		AgentRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_agent_refused_total",
			Help: "Agent-check connections closed unanswered because the server was at a cap, by cap.",
		}, []string{"reason"}),
	}
	for _, op := range commandOps() {
		for _, r := range commandResults() {
			m.Commands.WithLabelValues(op, r)
		}
	}
	for _, r := range skipReasons() {
		m.Skipped.WithLabelValues(r)
	}
	for _, w := range agentWords() {
		m.AgentReplies.WithLabelValues(w)
	}
	for _, r := range refusalReasons() {
		m.AgentRefused.WithLabelValues(r)
	}
	return m, promreg.Register(reg, m.Up, m.Commands, m.ReconcileDuration, m.LastSuccess, m.ReconcileErrors,
		m.ServerWeight, m.ServerAdminState, m.ServerConnections, m.Skipped, m.Drains, m.AgentReplies, m.AgentRefused)
}

func contains[T comparable](set []T, v T) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}
