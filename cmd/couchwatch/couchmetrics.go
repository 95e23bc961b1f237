package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/internal/promreg"
)

// CouchMetricsConfig sets the re-export of CouchDB's own metrics.
//
// On by default: most CHT sites are single-node, where there is nothing to steer and
// visibility is what couchwatch adds; CouchDB's /_node/_local/_prometheus needs admin
// credentials, which couchwatch already holds and a site's monitoring should not
// (cht-core #11074). A scrape of /metrics never calls CouchDB: it serves the last
// scrape, taken every Interval with its own deadline and size bounds.
type CouchMetricsConfig struct {
	On        bool          `env:"COUCHWATCH_COUCHDB_METRICS, default=true" desc:"re-export each node's /_node/_local/_prometheus on /metrics with a node label (couchwatch's credentials; on: single-node sites need it most)"`
	Interval  time.Duration `env:"COUCHWATCH_COUCHDB_METRICS_INTERVAL, default=30s" desc:"how often each node's CouchDB metrics are scraped (/metrics serves the last scrape)"`
	Timeout   time.Duration `env:"COUCHWATCH_COUCHDB_METRICS_TIMEOUT, default=5s" desc:"deadline of one scrape of a node's CouchDB metrics"`
	MaxSeries int           `env:"COUCHWATCH_COUCHDB_METRICS_MAX_SERIES, default=5000" desc:"most series accepted from one node's scrape (CouchDB 3.4.3 sends ~560)"`
	MaxTotal  int           `env:"COUCHWATCH_COUCHDB_METRICS_MAX_TOTAL_SERIES, default=20000" desc:"most series re-exported for all nodes together (~35 CouchDB 3.4.3 nodes); past it a node's scrape is refused, which keeps memory within the container's limit (300 nodes: 229 MiB RSS uncapped)"`
}

// Validate reports every problem at once.
func (c CouchMetricsConfig) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_COUCHDB_METRICS_INTERVAL must be > 0, got %s", c.Interval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_COUCHDB_METRICS_TIMEOUT must be > 0, got %s", c.Timeout))
	}
	if c.MaxSeries < 1 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_COUCHDB_METRICS_MAX_SERIES must be >= 1, got %d", c.MaxSeries))
	}
	if c.MaxTotal < c.MaxSeries {
		errs = append(errs, fmt.Errorf("COUCHWATCH_COUCHDB_METRICS_MAX_TOTAL_SERIES must be >= COUCHWATCH_COUCHDB_METRICS_MAX_SERIES (%d), got %d", c.MaxSeries, c.MaxTotal))
	}
	return errors.Join(errs...)
}

// couchMetrics scrapes every node's /_node/_local/_prometheus and serves the last
// good scrape of each with a node label (the COUCHDB_SERVERS name). It is an unchecked
// collector: CouchDB decides its metric names.
type couchMetrics struct {
	cfg   CouchMetricsConfig
	nodes []*couch.Node
	log   *slog.Logger

	success  *prometheus.GaugeVec
	duration *prometheus.GaugeVec
	lastOK   *prometheus.GaugeVec
	series   *prometheus.GaugeVec

	mu   sync.Mutex
	last map[string][]prometheus.Metric // node -> metrics of the last good scrape
	sigs map[string]familySigs          // node -> the families of its last good scrape
	fail map[string]string              // node -> last failure reason, for logs on change
}

// familySig is what a Prometheus registry needs to agree on for one metric name across
// every node's series: type, help and label names.
type familySig struct {
	typ  dto.MetricType
	help string
	keys string
}

type familySigs map[string]familySig

// conflict names the first family on which a and b disagree, "" if none.
func (a familySigs) conflict(b familySigs) string {
	for name, sa := range a {
		if sb, ok := b[name]; ok && sa != sb {
			return name
		}
	}
	return ""
}

func newCouchMetrics(cfg CouchMetricsConfig, nodes []*couch.Node, log *slog.Logger, reg prometheus.Registerer) (*couchMetrics, error) {
	c := &couchMetrics{cfg: cfg, nodes: nodes, log: log, last: map[string][]prometheus.Metric{}, sigs: map[string]familySigs{}, fail: map[string]string{},
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_couchdb_metrics_scrape_success",
			Help: "1 if the last scrape of the node's /_node/_local/_prometheus succeeded."}, []string{"node"}),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_couchdb_metrics_scrape_duration_seconds",
			Help: "Duration of the last scrape of the node's /_node/_local/_prometheus."}, []string{"node"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_couchdb_metrics_last_success_timestamp_seconds",
			Help: "Unix time of the last good scrape of the node's CouchDB metrics (what couchdb_* series show)."}, []string{"node"}),
		series: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_couchdb_metrics_series",
			Help: "CouchDB series re-exported for the node from its last good scrape."}, []string{"node"}),
	}
	for _, n := range nodes {
		c.success.WithLabelValues(n.Name())
		c.series.WithLabelValues(n.Name())
	}
	return c, promreg.Register(reg, c, c.success, c.duration, c.lastOK, c.series)
}

// Describe sends nothing: an unchecked collector (CouchDB's names are not known in advance).
func (c *couchMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect serves the last good scrape of every node. Families are checked when they are
// scraped, so what is sent here never fails a /metrics scrape.
func (c *couchMetrics) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ms := range c.last {
		for _, m := range ms {
			ch <- m
		}
	}
}

// run scrapes every node every Interval until ctx ends, the nodes one after the other
// (a hung node costs at most Timeout of the round).
func (c *couchMetrics) run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		for _, n := range c.nodes {
			if ctx.Err() != nil {
				return
			}
			c.scrape(ctx, n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *couchMetrics) scrape(ctx context.Context, n *couch.Node) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	ms, sigs, err := c.fetch(ctx, n)
	c.duration.WithLabelValues(n.Name()).Set(time.Since(start).Seconds())
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return // shutting down
		}
		c.success.WithLabelValues(n.Name()).Set(0)
		reason := string(couch.Classify(err))
		if c.fail[n.Name()] != reason {
			c.log.Warn("couchdb metrics scrape failed: serving the last good scrape", "node", n.Name(), "reason", reason, "err", err)
		}
		c.fail[n.Name()] = reason
		return
	}
	// The union of every node's metrics must gather cleanly (nodes on different
	// CouchDB versions could disagree on a family's help, type or labels): a scrape
	// that would break couchwatch's own /metrics is refused, the last good one stays.
	// Comparing family signatures costs O(families x nodes); gathering the union in a
	// registry cost O(series x nodes) per scrape, O(N^2) a round: at 30 nodes it was
	// most of couchwatch's CPU (bench/scale, 3.27 % of a core against 1.55 % without
	// the re-export).
	if total := c.totalExcept(n.Name()) + len(ms); total > c.cfg.MaxTotal {
		c.success.WithLabelValues(n.Name()).Set(0)
		if c.fail[n.Name()] != "total" {
			c.log.Warn("couchdb metrics of this node not re-exported: every node's series together would pass the cap",
				"node", n.Name(), "series", total, "cap", c.cfg.MaxTotal, "reason", "COUCHWATCH_COUCHDB_METRICS_MAX_TOTAL_SERIES")
		}
		c.fail[n.Name()] = "total"
		return
	}
	var clash, with string
	for other, os := range c.sigs {
		if other != n.Name() {
			if f := sigs.conflict(os); f != "" {
				clash, with = f, other
				break
			}
		}
	}
	if clash != "" {
		c.success.WithLabelValues(n.Name()).Set(0)
		if c.fail[n.Name()] != "inconsistent" {
			c.log.Warn("couchdb metrics of this node disagree with another node's: serving its last good scrape",
				"node", n.Name(), "family", clash, "other", with)
		}
		c.fail[n.Name()] = "inconsistent"
		return
	}
	if c.fail[n.Name()] != "" {
		c.log.Info("couchdb metrics scrape works again", "node", n.Name())
	}
	delete(c.fail, n.Name())
	c.last[n.Name()] = ms
	c.sigs[n.Name()] = sigs
	c.success.WithLabelValues(n.Name()).Set(1)
	c.lastOK.WithLabelValues(n.Name()).Set(float64(time.Now().UnixNano()) / 1e9)
	c.series.WithLabelValues(n.Name()).Set(float64(len(ms)))
}

// totalExcept counts the series kept for every node but one. Called with c.mu held.
func (c *couchMetrics) totalExcept(node string) int {
	total := 0
	for name, ms := range c.last {
		if name != node {
			total += len(ms)
		}
	}
	return total
}

// gathers reports whether ms gather cleanly in a registry of their own.
func gathers(ms constCollector) error {
	probe := prometheus.NewPedanticRegistry()
	if err := probe.Register(ms); err != nil {
		return err
	}
	_, err := probe.Gather()
	return err
}

// fetch scrapes and converts one node's metrics, and proves them in a throwaway
// registry, so that nothing a node sends can break couchwatch's own /metrics.
func (c *couchMetrics) fetch(ctx context.Context, n *couch.Node) ([]prometheus.Metric, familySigs, error) {
	body, err := n.Prometheus(ctx)
	if err != nil {
		return nil, nil, err
	}
	fams, err := couch.ParsePrometheus(body, c.cfg.MaxSeries)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", n.Name(), err)
	}
	ms, sigs := withNode(fams, n.Name())
	if err := gathers(ms); err != nil {
		return nil, nil, &couch.Error{Op: "prometheus", Node: n.Name(), Reason: couch.ReasonMalformed, Err: err}
	}
	return ms, sigs, nil
}

type constCollector []prometheus.Metric

func (constCollector) Describe(chan<- *prometheus.Desc) {}
func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- m
	}
}

// withNode turns parsed families into const metrics carrying node="<name>". CouchDB's
// own node label (the peer of erlang_distribution metrics) becomes exported_node, as
// Prometheus does with honor_labels off.
// It also returns each family's signature; series of one family with the same label
// names share one Desc.
func withNode(fams map[string]*dto.MetricFamily, node string) ([]prometheus.Metric, familySigs) {
	names := make([]string, 0, len(fams))
	for name := range fams {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []prometheus.Metric
	sigs := make(familySigs, len(fams))
	descs := map[string]*prometheus.Desc{}
	for _, name := range names {
		f := fams[name]
		for _, m := range f.GetMetric() {
			keys := []string{"node"}
			vals := []string{node}
			for _, lp := range m.GetLabel() {
				k := lp.GetName()
				if k == "node" {
					k = "exported_node"
				}
				if f.GetType() == dto.MetricType_SUMMARY && k == "quantile" || f.GetType() == dto.MetricType_HISTOGRAM && k == "le" {
					continue
				}
				keys, vals = append(keys, k), append(vals, lp.GetValue())
			}
			keyStr := strings.Join(keys, ",")
			if _, ok := sigs[name]; !ok {
				sigs[name] = familySig{typ: f.GetType(), help: f.GetHelp(), keys: keyStr}
			}
			desc := descs[name+"\xff"+keyStr]
			if desc == nil {
				desc = prometheus.NewDesc(name, f.GetHelp(), keys, nil)
				descs[name+"\xff"+keyStr] = desc
			}
			var pm prometheus.Metric
			var err error
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				pm, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, m.GetCounter().GetValue(), vals...)
			case dto.MetricType_GAUGE:
				pm, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, m.GetGauge().GetValue(), vals...)
			case dto.MetricType_UNTYPED:
				pm, err = prometheus.NewConstMetric(desc, prometheus.UntypedValue, m.GetUntyped().GetValue(), vals...)
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				q := make(map[float64]float64, len(s.GetQuantile()))
				for _, x := range s.GetQuantile() {
					q[x.GetQuantile()] = x.GetValue()
				}
				pm, err = prometheus.NewConstSummary(desc, s.GetSampleCount(), s.GetSampleSum(), q, vals...)
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				b := make(map[float64]uint64, len(h.GetBucket()))
				for _, x := range h.GetBucket() {
					b[x.GetUpperBound()] = x.GetCumulativeCount()
				}
				pm, err = prometheus.NewConstHistogram(desc, h.GetSampleCount(), h.GetSampleSum(), b, vals...)
			default:
				continue
			}
			if err == nil {
				out = append(out, pm)
			}
		}
	}
	return out, sigs
}
