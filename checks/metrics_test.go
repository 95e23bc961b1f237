package checks

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic/couchwatch/couch"
)

func mustMetrics(t testing.TB, reg prometheus.Registerer) *Metrics {
	t.Helper()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A second set of families on one registry is an error naming them, not a panic.
func TestMetricsRegistrationErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	mustMetrics(t, reg)
	_, err := NewMetrics(reg)
	if err == nil || !strings.Contains(err.Error(), "register couchwatch_node_up, couchwatch_node_verdict, couchwatch_node_transitions_total and 15 more: duplicate") ||
		!strings.Contains(err.Error(), "register couchwatch_cluster_n: duplicate") {
		t.Fatalf("second registration: %v", err)
	}
}

func TestMetricsCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := mustMetrics(t, reg)
	a := m.initNode("a:5984")
	a.observe(ProbeUp, 3*time.Millisecond) // le 0.005
	a.observe(ProbeUp, 5*time.Millisecond) // le 0.005: bounds are inclusive
	a.observe(ProbeUp, 7*time.Second)      // above every bound: +Inf only
	a.observe(ProbeSystem, 20*time.Millisecond)
	a.fail(ProbeUp, couch.ReasonTimeout)
	a.fail(ProbeSystem, couch.ReasonHTTP5xx)
	a.fail(ProbeSystem, "no such reason") // counted as other
	a.setVerdict(Up)
	a.setVerdict(Down)
	a.up.set(1)
	a.setSignals(Signals{HaveSystem: true, RunQueue: 28, CouchFileP99: 4, HaveTasks: true,
		Tasks: map[string]float64{"indexer": 2}}, 0.75)
	m.initNode("b:5984") // all zeros, present

	want := `
# HELP couchwatch_probe_duration_seconds Duration of probes, successful or not.
# TYPE couchwatch_probe_duration_seconds histogram
` + histText("a:5984", "active_tasks", nil, 0, 0) + histText("a:5984", "knock", nil, 0, 0) + histText("a:5984", "membership", nil, 0, 0) +
		histText("a:5984", "system", map[string]int{"0.025": 1}, 1, 0.02) +
		histText("a:5984", "up", map[string]int{"0.005": 2}, 3, 7.008) +
		histText("b:5984", "active_tasks", nil, 0, 0) + histText("b:5984", "knock", nil, 0, 0) + histText("b:5984", "membership", nil, 0, 0) +
		histText("b:5984", "system", nil, 0, 0) + histText("b:5984", "up", nil, 0, 0)
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "couchwatch_probe_duration_seconds"); err != nil {
		t.Fatal(err)
	}
	checks := map[string]float64{
		`couchwatch_node_up{node="a:5984"}`:                                               1,
		`couchwatch_node_up{node="b:5984"}`:                                               0,
		`couchwatch_node_verdict{node="a:5984",verdict="down"}`:                           1,
		`couchwatch_node_verdict{node="a:5984",verdict="up"}`:                             0,
		`couchwatch_node_verdict{node="b:5984",verdict="unknown"}`:                        1,
		`couchwatch_node_transitions_total{node="a:5984",verdict="up"}`:                   1,
		`couchwatch_node_transitions_total{node="b:5984",verdict="down"}`:                 0,
		`couchwatch_probe_failures_total{node="a:5984",probe="up",reason="timeout"}`:      1,
		`couchwatch_probe_failures_total{node="b:5984",probe="up",reason="refused"}`:      0,
		`couchwatch_probe_failures_total{node="a:5984",probe="system",reason="http_5xx"}`: 1,
		`couchwatch_probe_failures_total{node="a:5984",probe="system",reason="other"}`:    1,
		`couchwatch_node_run_queue{node="a:5984"}`:                                        28,
		`couchwatch_node_message_queue{node="a:5984",queue="couch_file_p99"}`:             4,
		`couchwatch_node_active_tasks{node="a:5984",type="indexer"}`:                      2,
		`couchwatch_node_active_tasks{node="a:5984",type="replication"}`:                  0,
		`couchwatch_node_load_score{node="a:5984"}`:                                       0.75,
		`couchwatch_node_shard_copies_after_loss{node="b:5984"}`:                          0,
		`couchwatch_membership_disagreement{node="b:5984"}`:                               0,
		`couchwatch_node_latency_ewma_seconds{node="b:5984"}`:                             0,
		`couchwatch_node_os_processes{node="b:5984"}`:                                     0,
		`couchwatch_node_run_queue_dirty_cpu{node="b:5984"}`:                              0,
	}
	got := scrape(t, reg)
	for series, v := range checks {
		if g, ok := got[series]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", series, g, ok, v)
		}
	}
	if _, ok := got[`couchwatch_probe_failures_total{node="b:5984",probe="system",reason="refused"}`]; ok {
		t.Error("a slow probe's failure series exists before its first failure")
	}
	reasons := len(couch.Reasons())
	if n := testutil.CollectAndCount(m, "couchwatch_probe_failures_total"); n != 2*reasons+2 { // up: every reason on both nodes; system: a's two
		t.Errorf("%d failure series, want %d", n, 2*reasons+2)
	}
}

// histText is the exposition of one duration histogram; counts maps a bound to the
// observations in that bucket alone.
func histText(node, probe string, counts map[string]int, count int, sum float64) string {
	var b strings.Builder
	cum := 0
	for _, le := range []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5"} {
		cum += counts[le]
		b.WriteString(`couchwatch_probe_duration_seconds_bucket{node="` + node + `",probe="` + probe + `",le="` + le + `"} ` + itoa(cum) + "\n")
	}
	b.WriteString(`couchwatch_probe_duration_seconds_bucket{node="` + node + `",probe="` + probe + `",le="+Inf"} ` + itoa(count) + "\n")
	b.WriteString(`couchwatch_probe_duration_seconds_sum{node="` + node + `",probe="` + probe + `"} ` + ftoa(sum) + "\n")
	b.WriteString(`couchwatch_probe_duration_seconds_count{node="` + node + `",probe="` + probe + `"} ` + itoa(count) + "\n")
	return b.String()
}

func itoa(i int) string     { return strconv.Itoa(i) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// scrape gathers reg into series text (name{label="value",...}, labels sorted) -> value,
// for gauges and counters.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[mf.GetName()+"_count{"+strings.Join(labels, ",")+"}"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestReasonNamesAreCouchReasons(t *testing.T) {
	if got, want := fmt.Sprint(reasonNames[:]), fmt.Sprint(couch.Reasons()); got != want {
		t.Fatalf("reason label values %s, couch.Reasons() %s", got, want)
	}
}
