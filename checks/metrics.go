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
	queueNames  = [...]string{"couch_server", "rexi_server", "rexi_buffer", "couch_file_p99"}
	taskNames   = [...]string{"indexer", "database_compaction", "view_compaction", "replication", "other"}
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

// nodeMetrics are one node's series, looked up once: a label lookup hashes the label
// values on every call, and at 300 nodes the /_up probe alone sets ~1800 values a second.
type nodeMetrics struct {
	up, latency, score, runQueue, dirtyCPU, osProcs prometheus.Gauge
	queues                                          [4]prometheus.Gauge // in queueNames order
	tasks                                           [5]prometheus.Gauge // in taskNames order
	duration                                        map[string]prometheus.Observer
}

// initNode creates every series of a node so that dashboards and alerts see zeros, not
// absent series, and returns the ones set on every sample.
func (m *Metrics) initNode(node string) *nodeMetrics {
	nm := &nodeMetrics{
		up:       m.up.WithLabelValues(node),
		latency:  m.latency.WithLabelValues(node),
		score:    m.score.WithLabelValues(node),
		runQueue: m.runQueue.WithLabelValues(node),
		dirtyCPU: m.dirtyCPU.WithLabelValues(node),
		osProcs:  m.osProcs.WithLabelValues(node),
		duration: make(map[string]prometheus.Observer, len(probeNames)),
	}
	for i, q := range queueNames {
		nm.queues[i] = m.msgQueue.WithLabelValues(node, q)
	}
	for i, t := range taskNames {
		nm.tasks[i] = m.tasks.WithLabelValues(node, t)
	}
	for _, p := range probeNames {
		nm.duration[p] = m.duration.WithLabelValues(node, p)
	}
	for _, v := range Verdicts() {
		m.verdict.WithLabelValues(node, v.String()).Set(0)
		m.transitions.WithLabelValues(node, v.String())
	}
	m.verdict.WithLabelValues(node, Unknown.String()).Set(1)
	// Failures of the liveness probe start at 0 for every reason; those of the slower
	// probes appear on first failure (8 reasons x 4 probes per node adds up at 300 nodes).
	for _, r := range reasonNames {
		m.failures.WithLabelValues(node, ProbeUp, string(r))
	}
	m.disagreement.WithLabelValues(node)
	m.copiesAfterLs.WithLabelValues(node)
	return nm
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

func (nm *nodeMetrics) setSignals(s Signals, score float64) {
	nm.score.Set(score)
	if s.HaveSystem {
		nm.runQueue.Set(s.RunQueue)
		nm.dirtyCPU.Set(s.DirtyCPU)
		for i, v := range [len(queueNames)]float64{s.CouchServer, s.RexiServer, s.RexiBuffer, s.CouchFileP99} {
			nm.queues[i].Set(v)
		}
		nm.osProcs.Set(s.JSProcs)
	}
	if s.HaveTasks {
		for i, t := range taskNames {
			nm.tasks[i].Set(s.Tasks[t])
		}
	}
}
