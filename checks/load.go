package checks

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/medic/couchwatch/couch"
)

// LoadConfig sets the load score's saturation points and the Degraded hysteresis.
//
// The load score of a node is the largest of its signals, each divided by its saturation
// point and capped to 1: any one exhausted resource saturates a node. The signals are the
// Erlang run queue and dirty-CPU run queue, the message queues of couch_server,
// rexi_server, rexi_buffer and the 99th percentile of couch_file, the JavaScript
// processes against the node's own os_process_limit, the node's own active indexers and
// compactions, the EWMA of /_up latency and the EWMA of the _system call's own duration.
//
// run_queue is spiky on a loaded CouchDB (median ~1, p90 ~30, max ~110 in 0.5 s samples):
// the run-queue signals are the highest sample over the last Window, so a loaded node
// stays loaded between its spikes, and an idle node, which has none, stays idle. The
// _system call itself takes 100-700 ms on a loaded node (against a few ms idle) while
// /_up stays fast: a steady signal of the same load. The score is smoothed across
// samples too (Smoothing is the weight of the newest sample).
type LoadConfig struct {
	High       float64       `env:"COUCHWATCH_LOAD_HIGH, default=0.8" desc:"load score at or above which a node is saturated"`
	Low        float64       `env:"COUCHWATCH_LOAD_LOW, default=0.5" desc:"load score below which a saturated node has cooled"`
	Sustain    time.Duration `env:"COUCHWATCH_LOAD_SUSTAIN, default=30s" desc:"time above LOAD_HIGH before a node is Degraded"`
	Cooldown   time.Duration `env:"COUCHWATCH_LOAD_COOLDOWN, default=60s" desc:"time below LOAD_LOW before a Degraded node is Up again"`
	Smoothing  float64       `env:"COUCHWATCH_LOAD_SMOOTHING, default=0.5" desc:"weight of the newest sample in the smoothed load score (0-1]"`
	RunQueue   float64       `env:"COUCHWATCH_LOAD_RUN_QUEUE, default=16" desc:"run_queue at which the run-queue signal saturates"`
	DirtyCPU   float64       `env:"COUCHWATCH_LOAD_RUN_QUEUE_DIRTY_CPU, default=8" desc:"run_queue_dirty_cpu at which that signal saturates"`
	MsgQueue   float64       `env:"COUCHWATCH_LOAD_MESSAGE_QUEUE, default=1000" desc:"couch_server/rexi_server/rexi_buffer message queue at which they saturate"`
	CouchFile  float64       `env:"COUCHWATCH_LOAD_COUCH_FILE_P99, default=100" desc:"couch_file message queue p99 at which it saturates"`
	JSProcs    float64       `env:"COUCHWATCH_JS_PROCESS_LIMIT, default=0" desc:"JavaScript process limit os_proc_count is compared with; 0: each node's own [query_server_config] os_process_limit, read from its _config (CouchDB's default 100 if unset)"`
	Tasks      float64       `env:"COUCHWATCH_LOAD_ACTIVE_TASKS, default=16" desc:"active indexers + compactions at which that signal saturates"`
	Latency    time.Duration `env:"COUCHWATCH_LOAD_LATENCY, default=250ms" desc:"/_up latency EWMA at which the latency signal saturates"`
	LatencyEWM float64       `env:"COUCHWATCH_LATENCY_SMOOTHING, default=0.3" desc:"weight of the newest /_up (and _system) latency in its EWMA (0-1]"`
	Window     time.Duration `env:"COUCHWATCH_LOAD_WINDOW, default=60s" desc:"run_queue is spiky under load: its signal is the highest sample over this window (0: each sample alone)"`
	SysLatency time.Duration `env:"COUCHWATCH_LOAD_SYSTEM_LATENCY, default=250ms" desc:"EWMA of the _system call's own duration at which that signal saturates (100-700 ms on a loaded CouchDB)"`
}

// DefaultJSProcessLimit is CouchDB's own default os_process_limit, used when the node's
// _config cannot be read and COUCHWATCH_JS_PROCESS_LIMIT is 0.
const DefaultJSProcessLimit = 100

// Validate reports every problem at once.
func (c LoadConfig) Validate() error {
	var errs []error
	frac := func(name string, v float64) {
		if !(v > 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%s must be in (0,1], got %v", name, v))
		}
	}
	frac("COUCHWATCH_LOAD_HIGH", c.High)
	frac("COUCHWATCH_LOAD_LOW", c.Low)
	frac("COUCHWATCH_LOAD_SMOOTHING", c.Smoothing)
	frac("COUCHWATCH_LATENCY_SMOOTHING", c.LatencyEWM)
	if c.Low > c.High {
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOAD_LOW (%v) must not exceed COUCHWATCH_LOAD_HIGH (%v)", c.Low, c.High))
	}
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"COUCHWATCH_LOAD_RUN_QUEUE", c.RunQueue},
		{"COUCHWATCH_LOAD_RUN_QUEUE_DIRTY_CPU", c.DirtyCPU},
		{"COUCHWATCH_LOAD_MESSAGE_QUEUE", c.MsgQueue},
		{"COUCHWATCH_LOAD_COUCH_FILE_P99", c.CouchFile},
		{"COUCHWATCH_LOAD_ACTIVE_TASKS", c.Tasks},
	} {
		if !(p.v > 0) || math.IsInf(p.v, 1) {
			errs = append(errs, fmt.Errorf("%s must be > 0 and finite, got %v", p.name, p.v))
		}
	}
	if !(c.JSProcs >= 0) || math.IsInf(c.JSProcs, 1) {
		errs = append(errs, fmt.Errorf("COUCHWATCH_JS_PROCESS_LIMIT must be >= 0 and finite (0: the node's own), got %v", c.JSProcs))
	}
	if c.SysLatency <= 0 || c.SysLatency > time.Minute {
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOAD_SYSTEM_LATENCY must be within (0, 1m], got %s", c.SysLatency))
	}
	if c.Window < 0 || c.Window > time.Hour {
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOAD_WINDOW must be within [0, 1h], got %s", c.Window))
	}
	if c.Latency <= 0 || c.Latency > time.Minute {
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOAD_LATENCY must be within (0, 1m], got %s", c.Latency))
	}
	if c.Sustain < 0 || c.Sustain > time.Hour {
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOAD_SUSTAIN must be within [0, 1h], got %s", c.Sustain))
	}
	if c.Cooldown < 0 || c.Cooldown > time.Hour {
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOAD_COOLDOWN must be within [0, 1h], got %s", c.Cooldown))
	}
	return errors.Join(errs...)
}

// Signals are the inputs of the load score. RunQueue and DirtyCPU are as damped by the
// runner (the highest sample over LoadConfig.Window); SignalsFrom gives one sample's.
type Signals struct {
	RunQueue      float64
	DirtyCPU      float64
	RunQueueNow   float64 // the last sample of run_queue, undamped
	CouchServer   float64
	RexiServer    float64
	RexiBuffer    float64
	CouchFileP99  float64
	JSProcs       float64
	JSLimit       float64            // the node's own os_process_limit, 0 if unknown
	Tasks         map[string]float64 // the node's own tasks, by TaskType
	LatencyEWMA   time.Duration
	SystemLatency time.Duration // EWMA of the _system call's duration, 0 if unknown
	HaveSystem    bool
	HaveTasks     bool
	HaveLatencies bool
}

// SignalsFrom gathers the signals of one node's replies; sys and tasks may be nil.
func SignalsFrom(sys *couch.System, tasks []couch.ActiveTask, latency time.Duration) Signals {
	s := Signals{LatencyEWMA: latency, HaveLatencies: latency > 0}
	if sys != nil {
		s.HaveSystem = true
		s.RunQueue = float64(sys.RunQueue)
		s.RunQueueNow = s.RunQueue
		s.DirtyCPU = float64(sys.RunQueueDirtyCPU)
		s.JSProcs = float64(sys.OSProcCount)
		q := sys.MessageQueues
		s.CouchServer = float64(q["couch_server"])
		s.RexiServer = float64(q["rexi_server"])
		s.RexiBuffer = float64(q["rexi_buffer"])
		s.CouchFileP99 = float64(q["couch_file_p99"])
	}
	if tasks != nil {
		s.HaveTasks = true
		s.Tasks = make(map[string]float64, len(taskNames))
		for _, t := range tasks {
			s.Tasks[TaskType(t.Type)]++
		}
	}
	return s
}

// TaskType folds an /_active_tasks type into the bounded set used as a metric label.
func TaskType(t string) string {
	switch t {
	case "indexer", "database_compaction", "view_compaction", "replication":
		return t
	}
	return "other"
}

// Score maps signals to [0,1]: the largest signal relative to its saturation point.
// It also returns the name of that signal, for logs and reasons.
func (c LoadConfig) Score(s Signals) (float64, string) {
	best, name := 0.0, "none"
	take := func(n string, v, limit float64) {
		if limit <= 0 {
			return
		}
		if r := v / limit; r > best {
			best, name = r, n
		}
	}
	if s.HaveSystem {
		take("run_queue", s.RunQueue, c.RunQueue)
		take("run_queue_dirty_cpu", s.DirtyCPU, c.DirtyCPU)
		take("couch_server", s.CouchServer, c.MsgQueue)
		take("rexi_server", s.RexiServer, c.MsgQueue)
		take("rexi_buffer", s.RexiBuffer, c.MsgQueue)
		take("couch_file_p99", s.CouchFileP99, c.CouchFile)
		take("os_proc_count", s.JSProcs, c.jsLimit(s))
		if s.SystemLatency > 0 {
			take("system_latency", s.SystemLatency.Seconds(), c.SysLatency.Seconds())
		}
	}
	if s.HaveTasks {
		take("active_tasks", s.Tasks["indexer"]+s.Tasks["database_compaction"]+s.Tasks["view_compaction"], c.Tasks)
	}
	if s.HaveLatencies {
		take("latency", s.LatencyEWMA.Seconds(), c.Latency.Seconds())
	}
	if math.IsNaN(best) || best < 0 {
		best = 0
	}
	return math.Min(best, 1), name
}

// jsLimit is the JavaScript process limit a node's os_proc_count is compared with:
// COUCHWATCH_JS_PROCESS_LIMIT when set, else the node's own os_process_limit, else
// CouchDB's default.
func (c LoadConfig) jsLimit(s Signals) float64 {
	switch {
	case c.JSProcs > 0:
		return c.JSProcs
	case s.JSLimit > 0:
		return s.JSLimit
	}
	return DefaultJSProcessLimit
}

// loadTracker smooths the score and applies the Degraded hysteresis: Degraded after the
// smoothed score stays >= High for Sustain, back after it stays < Low for Cooldown.
type loadTracker struct {
	score      float64
	known      bool
	degraded   bool
	aboveSince time.Time // zero while below High
	belowSince time.Time // zero while >= Low
}

// observe feeds one raw score taken at now and reports whether Degraded changed.
func (t *loadTracker) observe(c LoadConfig, raw float64, now time.Time) bool {
	if !t.known {
		t.score, t.known = raw, true
	} else {
		t.score = c.Smoothing*raw + (1-c.Smoothing)*t.score
	}
	if t.score >= c.High {
		if t.aboveSince.IsZero() {
			t.aboveSince = now
		}
	} else {
		t.aboveSince = time.Time{}
	}
	if t.score < c.Low {
		if t.belowSince.IsZero() {
			t.belowSince = now
		}
	} else {
		t.belowSince = time.Time{}
	}
	was := t.degraded
	switch {
	case !t.degraded && !t.aboveSince.IsZero() && now.Sub(t.aboveSince) >= c.Sustain:
		t.degraded = true
	case t.degraded && !t.belowSince.IsZero() && now.Sub(t.belowSince) >= c.Cooldown:
		t.degraded = false
	}
	return was != t.degraded
}

// forget drops what is known, e.g. when the node goes down.
func (t *loadTracker) forget() { *t = loadTracker{} }
