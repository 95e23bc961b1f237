package kube

import (
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FlagAfter, cfg.ClearAfter, cfg.ClearBelow = 2*time.Minute, 5*time.Minute, 0.5
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	hot := CouchLoad{Server: "a", Degraded: true, Score: 0.9, Known: true}
	warm := CouchLoad{Server: "a", Score: 0.7, Known: true}
	calm := CouchLoad{Server: "a", Score: 0.1, Known: true}
	unknown := CouchLoad{Server: "a", Degraded: true, Score: 0.9}
	type step struct {
		at   time.Duration
		load CouchLoad
	}
	tests := []struct {
		name      string
		steps     []step
		at        time.Duration
		hot, cool bool
	}{
		{"degraded not yet sustained", []step{{0, hot}, {time.Minute, hot}}, 119 * time.Second, false, false},
		{"degraded sustained", []step{{0, hot}, {time.Minute, hot}}, 2 * time.Minute, true, false},
		{"a healthy pass resets the sustain", []step{{0, hot}, {time.Minute, calm}, {90 * time.Second, hot}}, 3 * time.Minute, false, false},
		{"unknown resets the sustain and never counts", []step{{0, hot}, {time.Minute, unknown}, {90 * time.Second, hot}}, 3 * time.Minute, false, false},
		{"unknown is neither hot nor cool", []step{{0, unknown}}, time.Hour, false, false},
		{"cool after the cool-down", []step{{0, calm}}, 5 * time.Minute, false, true},
		{"above clear-below is not cool", []step{{0, warm}}, time.Hour, false, false},
		{"missing from a pass loses history", []step{{0, calm}, {time.Minute, CouchLoad{Server: "other", Known: true}}}, time.Hour, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(cfg, []string{"a"})
			for _, s := range tc.steps {
				tr.observe(t0.Add(s.at), []CouchLoad{s.load})
			}
			got := tr.snapshot(t0.Add(tc.at))["a"]
			if got.Hot != tc.hot || got.Cool != tc.cool {
				t.Fatalf("hot=%v cool=%v, want hot=%v cool=%v", got.Hot, got.Cool, tc.hot, tc.cool)
			}
		})
	}
}
