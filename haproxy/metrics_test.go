package haproxy

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	if err == nil || !strings.Contains(err.Error(), "register couchwatch_haproxy_up: duplicate") ||
		!strings.Contains(err.Error(), "register couchwatch_agent_replies_total: duplicate") {
		t.Fatalf("second registration: %v", err)
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := mustMetrics(t, reg)
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
