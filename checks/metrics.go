package checks

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/couch"
)

// Metrics are the [checks] families of docs/metrics.md.
type Metrics struct {
	up            *prometheus.GaugeVec
	verdict       *prometheus.GaugeVec
	transitions   *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	failures      *prometheus.CounterVec
	score         *prometheus.GaugeVec
	runQueue      *prometheus.GaugeVec
	dirtyCPU      *prometheus.GaugeVec
	msgQueue      *prometheus.GaugeVec
	osProcs       *prometheus.GaugeVec
	tasks         *prometheus.GaugeVec
	latency       *prometheus.GaugeVec
	disagreement  *prometheus.GaugeVec
	clusterN      prometheus.Gauge
	copiesAfterLs *prometheus.GaugeVec
}

// Probe names, used as the "probe" label.
const (
	ProbeUp          = "up"
	ProbeMembership  = "membership"
	ProbeSystem      = "system"
	ProbeActiveTasks = "active_tasks"
)

var (
	probeNames  = []string{ProbeUp, ProbeMembership, ProbeSystem, ProbeActiveTasks}
	queueNames  = []string{"couch_server", "rexi_server", "rexi_buffer", "couch_file_p99"}
	taskNames   = []string{"indexer", "database_compaction", "view_compaction", "replication", "other"}
	reasonNames = []couch.Reason{couch.ReasonRefused, couch.ReasonTimeout, couch.ReasonHTTP5xx, couch.ReasonHTTP4xx,
		couch.ReasonAuth, couch.ReasonMalformed, couch.ReasonTooLarge, couch.ReasonOther}
)

// NewMetrics registers the checks metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	node := []string{"node"}
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_up",
			Help: "1 if the last /_up probe of the node answered 200 ok."}, node),
		verdict: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_verdict",
			Help: "Current verdict of the node (one-hot)."}, []string{"node", "verdict"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "couchwatch_node_transitions_total",
			Help: "Verdict changes of the node, by new verdict."}, []string{"node", "verdict"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "couchwatch_probe_duration_seconds",
			Help:    "Duration of probes, successful or not.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"node", "probe"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "couchwatch_probe_failures_total",
			Help: "Failed probes, by reason."}, []string{"node", "probe", "reason"}),
		score: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_load_score",
			Help: "Smoothed load score of the node, 0 (idle) to 1 (saturated)."}, node),
		runQueue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_run_queue",
			Help: "Erlang run queue of the node (_system run_queue)."}, node),
		dirtyCPU: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_run_queue_dirty_cpu",
			Help: "Erlang dirty CPU run queue of the node."}, node),
		msgQueue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_message_queue",
			Help: "Message queue length of key CouchDB processes (couch_file: 99th percentile)."}, []string{"node", "queue"}),
		osProcs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_os_processes",
			Help: "JavaScript query server processes of the node (_system os_proc_count)."}, node),
		tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_active_tasks",
			Help: "Active tasks of the node, by type."}, []string{"node", "type"}),
		latency: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_latency_ewma_seconds",
			Help: "Exponentially weighted moving average of /_up probe latency."}, node),
		disagreement: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_membership_disagreement",
			Help: "1 if the node answers /_up but is missing from a peer's all_nodes."}, node),
		clusterN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "couchwatch_cluster_n",
			Help: "Copies of each shard (cluster n), 0 if unknown."}),
		copiesAfterLs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_node_shard_copies_after_loss",
			Help: "Copies of this node's shards left if it were lost (n-1); 0 means its shards become unavailable."}, node),
	}
	reg.MustRegister(m.up, m.verdict, m.transitions, m.duration, m.failures, m.score, m.runQueue, m.dirtyCPU,
		m.msgQueue, m.osProcs, m.tasks, m.latency, m.disagreement, m.clusterN, m.copiesAfterLs)
	return m
}

// initNode creates every series of a node so that dashboards and alerts see zeros, not
// absent series.
func (m *Metrics) initNode(node string) {
	m.up.WithLabelValues(node)
	for _, v := range Verdicts() {
		m.verdict.WithLabelValues(node, v.String()).Set(0)
		m.transitions.WithLabelValues(node, v.String())
	}
	m.verdict.WithLabelValues(node, Unknown.String()).Set(1)
	for _, p := range probeNames {
		m.duration.WithLabelValues(node, p)
	}
	// Failures of the liveness probe start at 0 for every reason; those of the slower
	// probes appear on first failure (8 reasons x 4 probes per node adds up at 300 nodes).
	for _, r := range reasonNames {
		m.failures.WithLabelValues(node, ProbeUp, string(r))
	}
	m.score.WithLabelValues(node)
	m.runQueue.WithLabelValues(node)
	m.dirtyCPU.WithLabelValues(node)
	for _, q := range queueNames {
		m.msgQueue.WithLabelValues(node, q)
	}
	m.osProcs.WithLabelValues(node)
	for _, t := range taskNames {
		m.tasks.WithLabelValues(node, t)
	}
	m.latency.WithLabelValues(node)
	m.disagreement.WithLabelValues(node)
	m.copiesAfterLs.WithLabelValues(node)
}

func (m *Metrics) setVerdict(node string, v Verdict) {
	for _, x := range Verdicts() {
		val := 0.0
		if x == v {
			val = 1
		}
		m.verdict.WithLabelValues(node, x.String()).Set(val)
	}
	m.transitions.WithLabelValues(node, v.String()).Inc()
}

func (m *Metrics) setSignals(node string, s Signals, score float64) {
	m.score.WithLabelValues(node).Set(score)
	if s.HaveSystem {
		m.runQueue.WithLabelValues(node).Set(s.RunQueue)
		m.dirtyCPU.WithLabelValues(node).Set(s.DirtyCPU)
		m.msgQueue.WithLabelValues(node, "couch_server").Set(s.CouchServer)
		m.msgQueue.WithLabelValues(node, "rexi_server").Set(s.RexiServer)
		m.msgQueue.WithLabelValues(node, "rexi_buffer").Set(s.RexiBuffer)
		m.msgQueue.WithLabelValues(node, "couch_file_p99").Set(s.CouchFileP99)
		m.osProcs.WithLabelValues(node).Set(s.JSProcs)
	}
	if s.HaveTasks {
		for _, t := range taskNames {
			m.tasks.WithLabelValues(node, t).Set(s.Tasks[t])
		}
	}
}
