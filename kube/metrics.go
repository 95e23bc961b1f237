package kube

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/internal/promreg"
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

// NewMetrics creates the families and registers them on reg (nil: not registered);
// every family that cannot be registered is in the error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
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
	return m, promreg.Register(reg, m.leader, m.flags, m.flagged, m.passes, m.evictions, m.apiErrors)
}

func (m *Metrics) apiError(verb string) { m.apiErrors.WithLabelValues(verb).Inc() }

func (m *Metrics) setLeader(on bool) {
	if on {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
