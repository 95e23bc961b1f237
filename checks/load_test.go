package checks

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch"
)

func defaultLoad() LoadConfig {
	return LoadConfig{High: 0.8, Low: 0.5, Sustain: 30 * time.Second, Cooldown: 60 * time.Second, Smoothing: 0.5,
		RunQueue: 16, DirtyCPU: 8, MsgQueue: 1000, CouchFile: 100, JSProcs: 0, Tasks: 16,
		Latency: 250 * time.Millisecond, LatencyEWM: 0.3, Window: time.Minute, SysLatency: 250 * time.Millisecond}
}

func readSystem(t *testing.T, name string) *couch.System {
	t.Helper()
	b, err := couch.Recorded(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := couch.ParseSystem(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return &s
}

func readTasks(t *testing.T, name string) []couch.ActiveTask {
	t.Helper()
	b, err := couch.Recorded(name)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := couch.ParseActiveTasks(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return tasks
}

// The recorded CouchDB 3.4.3 replies: loaded nodes must score as saturated, idle ones as idle.
func TestScoreFixtures(t *testing.T) {
	cfg := defaultLoad()
	tests := []struct {
		system, tasks string
		latency       time.Duration
		saturated     bool
		signal        string
	}{
		{"system_under_load.json", "active_tasks_view_build.json", 2 * time.Millisecond, true, "run_queue"},
		{"system_under_load_node2.json", "active_tasks_idle.json", 2 * time.Millisecond, true, "run_queue"},
		{"system_idle.json", "active_tasks_idle.json", 2 * time.Millisecond, false, ""},
		{"system_idle_peer_node1_during_node2_load.json", "active_tasks_idle.json", 2 * time.Millisecond, false, ""},
		{"system_idle.json", "active_tasks_idle.json", 400 * time.Millisecond, true, "latency"},
	}
	for _, tt := range tests {
		t.Run(tt.system+"/"+tt.latency.String(), func(t *testing.T) {
			sig := SignalsFrom(readSystem(t, tt.system), readTasks(t, tt.tasks), tt.latency)
			score, signal := cfg.Score(sig)
			if score < 0 || score > 1 {
				t.Fatalf("score %v out of [0,1]", score)
			}
			if tt.saturated {
				if score < cfg.High {
					t.Errorf("score %.3f (%s), want saturated (>= %v)", score, signal, cfg.High)
				}
				if signal != tt.signal {
					t.Errorf("signal %q, want %q", signal, tt.signal)
				}
			} else if score >= cfg.Low {
				t.Errorf("score %.3f (%s), want idle (< %v)", score, signal, cfg.Low)
			}
		})
	}
}

func TestSignalsFromTasks(t *testing.T) {
	sig := SignalsFrom(nil, readTasks(t, "active_tasks_view_build.json"), 0)
	if sig.Tasks["indexer"] != 5 || sig.Tasks["view_compaction"] != 1 {
		t.Fatalf("tasks %v, want 5 indexers and 1 view_compaction", sig.Tasks)
	}
	if sig.HaveSystem || sig.HaveLatencies {
		t.Fatal("signals claim data they were not given")
	}
}

func TestLoadTrackerHysteresis(t *testing.T) {
	cfg := defaultLoad()
	cfg.Smoothing = 1 // no smoothing: test the timing alone
	t0 := time.Unix(0, 0)
	tests := []struct {
		name  string
		at    []time.Duration
		score []float64
		want  []bool
	}{
		{"saturated shorter than sustain", []time.Duration{0, 10 * time.Second, 20 * time.Second, 25 * time.Second},
			[]float64{0.9, 0.9, 0.9, 0.1}, []bool{false, false, false, false}},
		{"saturated past sustain", []time.Duration{0, 15 * time.Second, 30 * time.Second},
			[]float64{0.9, 0.95, 0.9}, []bool{false, false, true}},
		{"a dip below high restarts sustain", []time.Duration{0, 20 * time.Second, 25 * time.Second, 50 * time.Second, 79 * time.Second, 80 * time.Second},
			[]float64{0.9, 0.9, 0.7, 0.9, 0.9, 0.9}, []bool{false, false, false, false, false, true}},
		{"stays degraded between low and high", []time.Duration{0, 30 * time.Second, 60 * time.Second, 200 * time.Second},
			[]float64{0.9, 0.9, 0.6, 0.6}, []bool{false, true, true, true}},
		{"clears after cooldown below low", []time.Duration{0, 30 * time.Second, 40 * time.Second, 90 * time.Second, 95 * time.Second},
			[]float64{0.9, 0.9, 0.2, 0.2, 0.2}, []bool{false, true, true, true, true}},
		{"clears after full cooldown", []time.Duration{0, 30 * time.Second, 40 * time.Second, 100 * time.Second},
			[]float64{0.9, 0.9, 0.2, 0.2}, []bool{false, true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lt loadTracker
			for i := range tt.at {
				lt.observe(cfg, tt.score[i], t0.Add(tt.at[i]))
				if lt.degraded != tt.want[i] {
					t.Fatalf("step %d (t=%s score=%v): degraded %v, want %v", i, tt.at[i], tt.score[i], lt.degraded, tt.want[i])
				}
			}
		})
	}
}

func TestLoadSmoothing(t *testing.T) {
	cfg := defaultLoad()
	var lt loadTracker
	now := time.Unix(0, 0)
	lt.observe(cfg, 1, now)
	lt.observe(cfg, 0, now)
	if lt.score != 0.5 {
		t.Fatalf("smoothed score %v, want 0.5", lt.score)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Interval: time.Second, Timeout: time.Second, TimeoutMin: time.Second, FastInterval: time.Second, Rise: 2, Fall: 2,
		SystemInterval: time.Second, SystemTimeout: time.Second, MembershipInterval: time.Second, Load: defaultLoad()}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	bad := good
	bad.Interval = 0
	bad.Rise = 0
	bad.Load.Low = 0.9
	bad.TimeoutMin = 2 * time.Second
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"COUCHWATCH_PROBE_INTERVAL", "COUCHWATCH_RISE", "COUCHWATCH_LOAD_LOW", "COUCHWATCH_PROBE_TIMEOUT_MIN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
