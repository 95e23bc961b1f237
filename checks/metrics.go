package checks

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/internal/promreg"
)

// Metrics are the [checks] families of docs/metrics.md.
//
// The per-node families are one collector over a few hundred bytes of atomics per node,
// turned into client_golang const metrics only when scraped. As client_golang vectors
// they cost ~27 KiB a node (~47 series, each with its own label pairs, and 4 histograms):
// at 300 nodes, 8 MiB of live heap, most of couchwatch's.
type Metrics struct {
	clusterN prometheus.Gauge

	mu    sync.RWMutex
	nodes []*nodeMetrics
}

// Probe names, used as the "probe" label.
const (
	ProbeUp          = "up"
	ProbeMembership  = "membership"
	ProbeSystem      = "system"
	ProbeActiveTasks = "active_tasks"
	ProbeKnock       = "knock" // unauthenticated /_up after an authenticated probe timed out
)

var (
	probeNames = [...]string{ProbeUp, ProbeMembership, ProbeSystem, ProbeActiveTasks, ProbeKnock}
	queueNames = [...]string{"couch_server", "rexi_server", "rexi_buffer", "couch_file_p99"}
	taskNames  = [...]string{"indexer", "database_compaction", "view_compaction", "replication", "other"}
	// reasonNames is couch.Reasons() (TestReasonNamesAreCouchReasons), as an array for the
	// counters' fixed size; ReasonOther last.
	reasonNames = [...]couch.Reason{couch.ReasonRefused, couch.ReasonTimeout, couch.ReasonDNS, couch.ReasonTLS,
		couch.ReasonProtocol, couch.ReasonRedirect, couch.ReasonHTTP5xx, couch.ReasonHTTP4xx, couch.ReasonAuth,
		couch.ReasonMalformed, couch.ReasonTooLarge, couch.ReasonOther}
	durationBuckets = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

func probeIndex(p string) int {
	if i := slices.Index(probeNames[:], p); i >= 0 {
		return i
	}
	return 0
}

func reasonIndex(r couch.Reason) int {
	if i := slices.Index(reasonNames[:], r); i >= 0 {
		return i
	}
	return len(reasonNames) - 1 // other
}

var (
	descUp = prometheus.NewDesc("couchwatch_node_up",
		"1 if the last /_up probe of the node answered 200 ok.", []string{"node"}, nil)
	descVerdict = prometheus.NewDesc("couchwatch_node_verdict",
		"Current verdict of the node (one-hot).", []string{"node", "verdict"}, nil)
	descTransitions = prometheus.NewDesc("couchwatch_node_transitions_total",
		"Verdict changes of the node, by new verdict.", []string{"node", "verdict"}, nil)
	descDuration = prometheus.NewDesc("couchwatch_probe_duration_seconds",
		"Duration of probes, successful or not.", []string{"node", "probe"}, nil)
	descFailures = prometheus.NewDesc("couchwatch_probe_failures_total",
		"Failed probes, by reason.", []string{"node", "probe", "reason"}, nil)
	descScore = prometheus.NewDesc("couchwatch_node_load_score",
		"Smoothed load score of the node, 0 (idle) to 1 (saturated).", []string{"node"}, nil)
	descRunQueue = prometheus.NewDesc("couchwatch_node_run_queue",
		"Erlang run queue of the node (_system run_queue).", []string{"node"}, nil)
	descDirtyCPU = prometheus.NewDesc("couchwatch_node_run_queue_dirty_cpu",
		"Erlang dirty CPU run queue of the node.", []string{"node"}, nil)
	descMsgQueue = prometheus.NewDesc("couchwatch_node_message_queue",
		"Message queue length of key CouchDB processes (couch_file: 99th percentile).", []string{"node", "queue"}, nil)
	descOSProcs = prometheus.NewDesc("couchwatch_node_os_processes",
		"JavaScript query server processes of the node (_system os_proc_count).", []string{"node"}, nil)
	descTasks = prometheus.NewDesc("couchwatch_node_active_tasks",
		"Active tasks of the node, by type.", []string{"node", "type"}, nil)
	descLatency = prometheus.NewDesc("couchwatch_node_latency_ewma_seconds",
		"Exponentially weighted moving average of /_up probe latency.", []string{"node"}, nil)
	descDisagreement = prometheus.NewDesc("couchwatch_membership_disagreement",
		"1 if the node answers /_up but is missing from a peer's all_nodes.", []string{"node"}, nil)
	descAuthBlocked = prometheus.NewDesc("couchwatch_node_auth_blocked",
		"1 while the node's authenticated probes time out but it answers an unauthenticated one at once: its authentication waits for a hung node that holds the _users shard. It stays in rotation.", []string{"node"}, nil)
	descSilent = prometheus.NewDesc("couchwatch_node_silent",
		"1 while the node answers neither authenticated nor unauthenticated requests (hung).", []string{"node"}, nil)
	descDataUnavailable = prometheus.NewDesc("couchwatch_node_data_unavailable",
		"1 while the node's shards cannot be read by the cluster: n=1 and the node is down or in maintenance_mode = true.", []string{"node"}, nil)
	descJSLimit = prometheus.NewDesc("couchwatch_node_os_process_limit",
		"The node's own JavaScript process limit ([query_server_config] os_process_limit), 0 until read.", []string{"node"}, nil)
	descCopies = prometheus.NewDesc("couchwatch_node_shard_copies_after_loss",
		"Copies of this node's shards left if it were lost (n-1); 0 means its shards become unavailable.", []string{"node"}, nil)
)

// NewMetrics creates the checks metrics and registers them on reg (nil: not registered);
// every family that cannot be registered is in the error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{clusterN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "couchwatch_cluster_n",
		Help: "Copies of each shard (cluster n), 0 if unknown."})}
	return m, promreg.Register(reg, m, m.clusterN)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descVerdict, descTransitions, descDuration, descFailures, descScore,
		descRunQueue, descDirtyCPU, descMsgQueue, descOSProcs, descTasks, descLatency, descDisagreement, descCopies,
		descAuthBlocked, descSilent, descDataUnavailable, descJSLimit} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: every node's series, present from the
// node's registration on so that dashboards and alerts see zeros, not absent series.
// Failures of the liveness probe are exported at 0 for every reason; those of the
// slower probes appear on their first failure (8 reasons x 4 probes per node adds up
// at 300 nodes).
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	nodes := m.nodes
	m.mu.RUnlock()
	for _, n := range nodes {
		node := n.node
		gauge := func(d *prometheus.Desc, v float64, more ...string) {
			ch <- constMetric(d, prometheus.GaugeValue, v, node, more)
		}
		counter := func(d *prometheus.Desc, v uint64, more ...string) {
			ch <- constMetric(d, prometheus.CounterValue, float64(v), node, more)
		}
		gauge(descUp, n.up.load())
		cur := Verdict(n.verdict.Load())
		for _, v := range Verdicts() {
			val := 0.0
			if v == cur {
				val = 1
			}
			gauge(descVerdict, val, verdictNames[v])
			counter(descTransitions, n.transitions[v].Load(), verdictNames[v])
		}
		for p, probe := range probeNames {
			ch <- n.duration[p].metric(node, probe)
			for r, reason := range reasonNames {
				if c := n.failures[p][r].Load(); c > 0 || probe == ProbeUp {
					counter(descFailures, c, probe, string(reason))
				}
			}
		}
		gauge(descScore, n.score.load())
		gauge(descRunQueue, n.runQueue.load())
		gauge(descDirtyCPU, n.dirtyCPU.load())
		for i, q := range queueNames {
			gauge(descMsgQueue, n.queues[i].load(), q)
		}
		gauge(descOSProcs, n.osProcs.load())
		for i, task := range taskNames {
			gauge(descTasks, n.tasks[i].load(), task)
		}
		gauge(descLatency, n.latency.load())
		gauge(descDisagreement, n.disagreement.load())
		gauge(descCopies, n.copies.load())
		gauge(descAuthBlocked, n.authBlocked.load())
		gauge(descSilent, n.silent.load())
		gauge(descDataUnavailable, n.dataUnavailable.load())
		gauge(descJSLimit, n.jsLimit.load())
	}
}

// constMetric is client_golang's const metric for node's series d with the further
// label values more, or an invalid metric (the scrape reports it) if they do not fit d.
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, node string, more []string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, append([]string{node}, more...)...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

// initNode adds a node's series and returns them.
func (m *Metrics) initNode(node string) *nodeMetrics {
	nm := &nodeMetrics{node: node}
	m.mu.Lock()
	m.nodes = append(slices.Clip(m.nodes), nm) // Collect may hold the old slice
	m.mu.Unlock()
	return nm
}

// nodeMetrics is one node's series.
type nodeMetrics struct {
	node string // the node label

	up, latency, score, runQueue, dirtyCPU, osProcs, disagreement, copies afloat
	authBlocked, silent, dataUnavailable, jsLimit                         afloat
	queues                                                                [len(queueNames)]afloat
	tasks                                                                 [len(taskNames)]afloat

	verdict     atomic.Int32 // a Verdict
	transitions [len(verdictNames)]atomic.Uint64
	failures    [len(probeNames)][len(reasonNames)]atomic.Uint64
	duration    [len(probeNames)]histogram
}

func (nm *nodeMetrics) observe(probe string, d time.Duration) {
	nm.duration[probeIndex(probe)].observe(d.Seconds())
}

func (nm *nodeMetrics) fail(probe string, r couch.Reason) {
	nm.failures[probeIndex(probe)][reasonIndex(r)].Add(1)
}

func (nm *nodeMetrics) setVerdict(v Verdict) {
	if v < 0 || int(v) >= len(verdictNames) {
		return
	}
	nm.verdict.Store(int32(v))
	nm.transitions[v].Add(1)
}

func (nm *nodeMetrics) setSignals(s Signals, score float64) {
	nm.score.set(score)
	if s.HaveSystem {
		nm.runQueue.set(s.RunQueue)
		nm.dirtyCPU.set(s.DirtyCPU)
		for i, v := range [len(queueNames)]float64{s.CouchServer, s.RexiServer, s.RexiBuffer, s.CouchFileP99} {
			nm.queues[i].set(v)
		}
		nm.osProcs.set(s.JSProcs)
	}
	if s.HaveTasks {
		for i, t := range taskNames {
			nm.tasks[i].set(s.Tasks[t])
		}
	}
}

// afloat is a float64 for concurrent use.
type afloat struct{ bits atomic.Uint64 }

func (a *afloat) set(v float64) { a.bits.Store(math.Float64bits(v)) }
func (a *afloat) load() float64 { return math.Float64frombits(a.bits.Load()) }

func (a *afloat) add(v float64) {
	for {
		old := a.bits.Load()
		if a.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// histogram counts observations per bucket of durationBuckets (the last slot: above the
// top bound).
type histogram struct {
	counts [len(durationBuckets) + 1]atomic.Uint64
	sum    afloat
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(durationBuckets[:], v) // the first bound >= v: le is inclusive
	h.counts[i].Add(1)
	h.sum.add(v)
}

// metric is the histogram as client_golang's const histogram; its count is the sum of
// its buckets, so the two agree even while observations land during a scrape.
func (h *histogram) metric(node, probe string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(durationBuckets))
	var cum uint64
	for i, b := range durationBuckets {
		cum += h.counts[i].Load()
		buckets[b] = cum
	}
	count := cum + h.counts[len(durationBuckets)].Load()
	m, err := prometheus.NewConstHistogram(descDuration, count, h.sum.load(), buckets, node, probe)
	if err != nil {
		return prometheus.NewInvalidMetric(descDuration, err)
	}
	return m
}
