package haproxy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.ServerWeight.WithLabelValues("n1").Set(1)
	m.ServerAdminState.WithLabelValues("n1", "ready").Set(1)
	m.ServerConnections.WithLabelValues("n1").Set(0)
	m.Drains.WithLabelValues("n1", "down").Inc()
	m.ReconcileDuration.Observe(0.01)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no metrics gathered")
	}
}
