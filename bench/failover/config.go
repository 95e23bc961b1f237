package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medic/couchwatch/haproxy/haproxytest"
)

type config struct {
	Rate          float64
	Reps          int
	Pre           time.Duration
	Window        time.Duration
	Tail          time.Duration
	MaxDetect     time.Duration
	Poll          time.Duration
	ClientTimeout time.Duration
	Idle          time.Duration
	SlowWindow    time.Duration // how long a slow-ramp or load fault is watched for false ejections
	RampFrom      time.Duration // the slow ramp's /_up latency at its start
	RampTo        time.Duration // ... and at its end, where it stays
	RampOver      time.Duration
	FaultNode     int // 1-based
	Methods       []string
	Faults        []string
}

func defaultConfig() config {
	return config{
		Rate:          50,
		Reps:          3,
		Pre:           time.Second,
		Window:        5 * time.Second,
		Tail:          time.Second,
		MaxDetect:     15 * time.Second,
		Poll:          2 * time.Millisecond,
		ClientTimeout: 2 * time.Minute,
		Idle:          60 * time.Second,
		SlowWindow:    20 * time.Second,
		RampFrom:      5 * time.Millisecond,
		RampTo:        400 * time.Millisecond,
		RampOver:      10 * time.Second,
		FaultNode:     2,
		Methods:       []string{"cw-default", tunedKey, "cht-agent"},
		Faults:        allFaults,
	}
}

func (c config) validate() error {
	var errs []error
	if c.Rate <= 0 || c.Rate > 2000 {
		errs = append(errs, fmt.Errorf("-rate must be in (0, 2000], got %v", c.Rate))
	}
	if c.Reps < 1 || c.Reps > 50 {
		errs = append(errs, fmt.Errorf("-reps must be 1..50, got %d", c.Reps))
	}
	if c.Poll <= 0 || c.Window <= 0 || c.MaxDetect <= 0 || c.Pre < 0 || c.Tail < 0 || c.ClientTimeout <= 0 || c.Idle < 0 ||
		c.SlowWindow <= 0 || c.RampFrom < 0 || c.RampTo <= 0 || c.RampOver < 0 {
		errs = append(errs, errors.New("durations must be positive (-pre, -tail, -idle, -ramp-from, -ramp-over may be 0)"))
	}
	if c.SlowWindow > 10*time.Minute || c.RampOver > c.SlowWindow {
		errs = append(errs, errors.New("-slow-window is at most 10m and at least -ramp-over"))
	}
	if c.MaxDetect > 10*time.Minute || c.Idle > 30*time.Minute {
		errs = append(errs, errors.New("-max-detect is at most 10m and -idle at most 30m"))
	}
	if c.FaultNode < 1 || c.FaultNode > nodes {
		errs = append(errs, fmt.Errorf("-node must be 1..%d, got %d", nodes, c.FaultNode))
	}
	for _, m := range c.Methods {
		if methodByKey(m).Key == "" {
			errs = append(errs, fmt.Errorf("unknown method %q", m))
		}
	}
	for _, f := range c.Faults {
		if !slices.Contains(allFaults, f) {
			errs = append(errs, fmt.Errorf("unknown fault %q (want %s)", f, strings.Join(allFaults, ", ")))
		}
	}
	if len(c.Methods) == 0 || len(c.Faults) == 0 {
		errs = append(errs, errors.New("at least one method and one fault"))
	}
	return errors.Join(errs...)
}

const (
	nodes      = 3
	faultCrash = "crash"
	faultHang  = "hang"
	// faultRamp: the node's latency rises gradually (-ramp-from to -ramp-to over
	// -ramp-over) and stays there; it keeps answering, so taking it out is a false
	// ejection.
	faultRamp = "slow-ramp"
	// faultLoad: the node is under real-shaped load (couchtest's SetLoad(1): what the
	// simulator does for a loaded CouchDB, and data requests slower with every one in
	// flight); it keeps answering, so marking it down is a false ejection.
	faultLoad = "load"
	// tunedKey is the method every time is compared with.
	tunedKey = "hap-tuned"
)

var allFaults = []string{faultCrash, faultHang, faultRamp, faultLoad}

// slowFault reports whether fault is one where the node keeps answering: it is watched
// for SlowWindow and any ejection is false.
func slowFault(fault string) bool { return fault == faultRamp || fault == faultLoad }

// CHT's timeouts (25 min connect, ~4 h client, 100 h server): a request stuck on a hung
// node waits, so ejection is the only defence.
var chtTimeouts = []string{"connect 1500000", "client 15000000", "server 360000000"}

// method is one way of taking a bad node out of rotation.
type method struct {
	Key, Name string
	// Tuning is couchwatch's environment (nil: no couchwatch in this method).
	Tuning map[string]string
	// Agent: run the CHT agent re-implementation and point agent-check at it.
	Agent bool
	// HAProxy configuration; "%AGENTPORT%" in ServerExtra is replaced.
	ServerExtra  string
	BackendExtra func(user, password string) []string
	Timeouts     []string
	Desc         string
}

func httpchk(user, password string) []string {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return []string{"option httpchk GET /_up", `http-check send hdr Authorization "Basic ` + auth + `"`}
}

func methods() []method {
	return []method{
		{
			Key: "cw-tuned", Name: "couchwatch (tuned)",
			Tuning: map[string]string{
				"COUCHWATCH_PROBE_INTERVAL": "100ms", "COUCHWATCH_PROBE_TIMEOUT": "150ms", "COUCHWATCH_FALL": "1",
			},
			Timeouts: chtTimeouts,
			Desc:     "runtime API; COUCHWATCH_PROBE_INTERVAL=100ms COUCHWATCH_PROBE_TIMEOUT=150ms COUCHWATCH_FALL=1, rest default (hold connection on, fast interval 100ms, rise 2); servers have no HAProxy checks",
		},
		{
			Key: "cw-default", Name: "couchwatch (defaults)", Tuning: map[string]string{},
			Timeouts: chtTimeouts,
			Desc:     "runtime API, every setting at its default (probe every 250ms, deadline D learnt per node: 4x its second slowest of the last 16 answers within 75ms-1s, a second opinion on a fresh connection at once after an error or after D/2 of silence, down after 1.5 D, every other node asked at once when one goes down, fall 2, rise 2, hold connection); no HAProxy checks",
		},
		{
			Key: "hap-tcp", Name: "HAProxy TCP check (CHT)", ServerExtra: "check inter 2s fall 3 rise 2",
			Timeouts: chtTimeouts,
			Desc:     "CHT's own `check` (a TCP connect) at inter 2s fall 3 rise 2",
		},
		{
			Key: "hap-http", Name: "HAProxy httpchk, CHT timing", ServerExtra: "check inter 2s fall 3 rise 2",
			BackendExtra: httpchk, Timeouts: chtTimeouts,
			Desc: "`option httpchk GET /_up` (Basic auth header), `check inter 2s fall 3 rise 2`, no `timeout check` (inter applies)",
		},
		{
			Key: tunedKey, Name: "HAProxy httpchk, tuned", ServerExtra: "check inter 250ms fastinter 100ms fall 1 rise 2",
			BackendExtra: func(u, p string) []string { return append(httpchk(u, p), "http-check disable-on-404") },
			Timeouts:     append(slices.Clone(chtTimeouts), "check 250ms"),
			Desc:         "`option httpchk GET /_up` (Basic auth header), `http-check disable-on-404`, `timeout check 250ms`, `check inter 250ms fastinter 100ms fall 1 rise 2`",
		},
		{
			Key: "cht-agent", Name: "CHT defaults (agent, all-or-nothing)", Agent: true,
			ServerExtra: "check agent-check agent-inter 5s agent-addr 127.0.0.1 agent-port %AGENTPORT%",
			Timeouts:    chtTimeouts,
			Desc:        "CHT's server line as shipped: `check agent-check agent-inter 5s` (a TCP check at inter 2s fall 3 rise 2 and the agent), agent = re-implementation of cht-haproxy-healthcheck (first node's /_membership, one answer for every server)",
		},
	}
}

func allMethodKeys() []string {
	var keys []string
	for _, m := range methods() {
		keys = append(keys, m.Key)
	}
	return keys
}

func methodByKey(key string) method {
	for _, m := range methods() {
		if m.Key == key {
			return m
		}
	}
	return method{}
}

func (m method) haproxyOptions(specs []haproxytest.ServerSpec, user, password string, agentPort int) haproxytest.Options {
	extra := m.ServerExtra
	if m.Agent {
		extra = replaceAgentPort(extra, agentPort)
	}
	opt := haproxytest.Options{Servers: specs, ServerExtra: extra, Timeouts: m.Timeouts, Balance: "leastconn"}
	if m.BackendExtra != nil {
		opt.BackendExtra = m.BackendExtra(user, password)
	}
	return opt
}

func replaceAgentPort(s string, port int) string {
	return strings.ReplaceAll(s, "%AGENTPORT%", strconv.Itoa(port))
}
