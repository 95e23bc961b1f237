package kube

import (
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsNamesAndLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// A second set on the same registry is an error naming the family, not a panic and
	// not a silent second set that nothing exports.
	if _, err := NewMetrics(reg); err == nil || !strings.Contains(err.Error(), "register couchwatch_kube_leader: duplicate") {
		t.Fatalf("second registration: %v", err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	sort.Strings(names)
	want := "couchwatch_kube_api_errors_total couchwatch_kube_evictions_total couchwatch_kube_flagged_nodes couchwatch_kube_flags_total couchwatch_kube_leader couchwatch_kube_passes_total"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("families = %s\nwant %s (docs/metrics.md)", got, want)
	}
}
