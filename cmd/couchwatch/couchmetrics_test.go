package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/internal/envconf"
	"github.com/medic/couchwatch/internal/testenv"
)

// The family signatures stand in for gathering every node's series together: where the
// union gathers cleanly they agree, and where one node's family differs in help or type
// (two CouchDB versions) both the gather and the signatures say so.
func TestCouchMetricsSignaturesMatchTheUnionGather(t *testing.T) {
	scrape := func(node string, edit func(body []byte) []byte) ([]prometheus.Metric, familySigs) {
		t.Helper()
		body, err := couch.Recorded("prometheus.txt")
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			body = edit(body)
		}
		fams, err := couch.ParsePrometheus(body, 5000)
		if err != nil {
			t.Fatal(err)
		}
		return withNode(fams, node)
	}
	replace := func(old, new string) func([]byte) []byte {
		return func(b []byte) []byte {
			out := []byte(strings.Replace(string(b), old, new, 1))
			if string(out) == string(b) {
				t.Fatalf("fixture has no %q", old)
			}
			return out
		}
	}
	m1, s1 := scrape("couchdb-1", nil)
	tests := []struct {
		name     string
		edit     func([]byte) []byte
		conflict string
	}{
		{"same version", nil, ""},
		{"other help", replace("# HELP couchdb_uptime_seconds ", "# HELP couchdb_uptime_seconds changed "), "couchdb_uptime_seconds"},
		{"other type", replace("# TYPE couchdb_uptime_seconds counter", "# TYPE couchdb_uptime_seconds gauge"), "couchdb_uptime_seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m2, s2 := scrape("couchdb-2", tc.edit)
			union := append(append(constCollector{}, m1...), m2...)
			gerr := gathers(union)
			got := s2.conflict(s1)
			if got != tc.conflict {
				t.Errorf("conflict %q, want %q", got, tc.conflict)
			}
			if (gerr != nil) != (tc.conflict != "") {
				t.Errorf("union gather error %v, but signature conflict %q", gerr, got)
			}
		})
	}
}

// The cap on every node's series together: past it a node's scrape is refused (and said
// so), the nodes already kept stay, and nothing else changes.
func TestCouchMetricsTotalCap(t *testing.T) {
	body, err := couch.Recorded("prometheus.txt")
	if err != nil {
		t.Fatal(err)
	}
	fams, err := couch.ParsePrometheus(body, 5000)
	if err != nil {
		t.Fatal(err)
	}
	one, _ := withNode(fams, "x")
	cl := couchtest.NewClusterT(t, 3, couchtest.Options{})
	targets, err := couch.ParseServers(cl.Targets())
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*couch.Node
	for _, tg := range targets {
		n, err := couch.NewNode(tg, couch.Options{User: cl.User(), Password: cl.Password(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	logs := &testenv.LogBuffer{}
	cfg := envconf.Defaults[CouchMetricsConfig]()
	cfg.MaxTotal = 2*len(one) + len(one)/2 // room for two nodes, not three
	reg := prometheus.NewPedanticRegistry()
	c, err := newCouchMetrics(cfg, nodes, slog.New(slog.NewTextHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second round: the refusal is logged once
		for _, n := range nodes {
			c.scrape(t.Context(), n)
		}
	}
	for i, want := range []float64{1, 1, 0} {
		if got := testutil.ToFloat64(c.success.WithLabelValues(nodes[i].Name())); got != want {
			t.Errorf("node %d scrape_success %v, want %v", i+1, got, want)
		}
	}
	if got := testutil.CollectAndCount(c); got != 2*len(one) {
		t.Errorf("%d series re-exported, want %d (two nodes)", got, 2*len(one))
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("/metrics no longer gathers: %v", err)
	}
	if got := strings.Count(logs.String(), "would pass the cap"); got != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", got, logs.String())
	}
}
