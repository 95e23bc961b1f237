package promreg

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_up", Help: "h"})
	b := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "h"}, []string{"l"})
	if err := Register(reg, a, b); err != nil {
		t.Fatal(err)
	}
	if err := Register(nil, a); err != nil {
		t.Fatalf("nil registerer: %v", err)
	}
	again := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_up", Help: "h"})
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other help"})
	err := Register(reg, again, clash)
	// The messages after the family names are client_golang's own.
	if err == nil {
		t.Fatal("duplicate and clashing families registered")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "register x_up: duplicate metrics collector") ||
		!strings.HasPrefix(lines[1], "register x_total: a previously registered descriptor") {
		t.Fatalf("err = %v, want one line naming each family", err)
	}
}
