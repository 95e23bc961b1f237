package kube

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the [kube] metric families (docs/metrics.md).
const (
	actionSet   = "set"
	actionClear = "clear"

	resultEvicted    = "evicted"
	resultBlockedPDB = "blocked_pdb"
	resultError      = "error"
	resultDryRun     = "dry_run"

	verbGet    = "get"
	verbList   = "list"
	verbWatch  = "watch"
	verbPatch  = "patch"
	verbCreate = "create"
	verbUpdate = "update"
	verbEvict  = "evict"
)

// Metrics are the Kubernetes families of docs/metrics.md.
type Metrics struct {
	leader    prometheus.Gauge
	flags     *prometheus.CounterVec
	flagged   prometheus.Gauge
	passes    prometheus.Counter
	evictions *prometheus.CounterVec
	apiErrors *prometheus.CounterVec
}

// NewMetrics creates the families and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couchwatch_kube_leader",
			Help: "1 while this replica holds the Lease and may write to the cluster.",
		}),
		flags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_kube_flags_total",
			Help: "This instance's node flag changes (its owner label; taint, label, condition while any instance needs them) by action.",
		}, []string{"action"}),
		flagged: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couchwatch_kube_flagged_nodes",
			Help: "Kubernetes nodes this instance currently flags as hosting its saturated CouchDB.",
		}),
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couchwatch_kube_passes_total",
			Help: "Flag passes (observe, plan, write) run while leading.",
		}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_kube_evictions_total",
			Help: "Pod evictions from flagged nodes by result.",
		}, []string{"result"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couchwatch_kube_api_errors_total",
			Help: "Kubernetes API errors by verb.",
		}, []string{"verb"}),
	}
	for _, a := range []string{actionSet, actionClear} {
		m.flags.WithLabelValues(a)
	}
	for _, r := range []string{resultEvicted, resultBlockedPDB, resultError, resultDryRun} {
		m.evictions.WithLabelValues(r)
	}
	for _, v := range []string{verbGet, verbList, verbWatch, verbPatch, verbCreate, verbUpdate, verbEvict} {
		m.apiErrors.WithLabelValues(v)
	}
	if reg != nil {
		m.leader = register(reg, m.leader)
		m.flags = register(reg, m.flags)
		m.flagged = register(reg, m.flagged)
		m.passes = register(reg, m.passes)
		m.evictions = register(reg, m.evictions)
		m.apiErrors = register(reg, m.apiErrors)
	}
	return m
}

// register registers c, or returns the identical collector already registered
// (two controllers sharing a registry share the families). Any other
// registration problem leaves c unregistered rather than panicking: metrics
// must never take the sidecar down.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c
}

func (m *Metrics) apiError(verb string) { m.apiErrors.WithLabelValues(verb).Inc() }

func (m *Metrics) setLeader(on bool) {
	if on {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
