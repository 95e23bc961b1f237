package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/haproxy"
)

// statusView is what the status page, /status.json and `couchwatch status` show: per
// node the evidence behind its verdict and what couchwatch wants against what HAProxy
// reports, the decision timeline, the charts' samples and the n=1 blast radius.
type statusView struct {
	Version    string    `json:"version"`
	Now        time.Time `json:"now"`
	Mode       string    `json:"mode"`
	Backend    string    `json:"backend"`
	LastPass   string    `json:"last_pass"`
	FailOpen   bool      `json:"fail_open"`
	Budget     string    `json:"load_drain_budget"`
	MinReady   int       `json:"min_ready"`
	HAProxyErr string    `json:"haproxy_error,omitempty"`
	Unmapped   []string  `json:"unmapped,omitempty"`
	Unwatched  []string  `json:"unwatched_servers,omitempty"`
	ClusterN   int       `json:"cluster_n"`
	Kube       string    `json:"kube"`
	Leader     bool      `json:"kube_leader"`

	Nodes []nodeView `json:"nodes"`
	Blast blastView  `json:"blast_radius"`
	// Timeline is newest first; TimelineTotal counts every event since start (the
	// ring keeps the last timelineSize).
	Timeline      []Event `json:"timeline"`
	TimelineTotal uint64  `json:"timeline_total"`
	ChartSpan     string  `json:"chart_span"`
}

// nodeView is one node: names, verdict, evidence, want vs HAProxy, and its history.
type nodeView struct {
	Node       string `json:"node"`        // as in COUCHDB_SERVERS
	ErlangName string `json:"erlang_name"` // CouchDB's own name, "" until learnt
	Server     string `json:"server"`      // HAProxy server, "" if unmapped

	Verdict  string    `json:"verdict"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Verified bool      `json:"verified"`
	Rule     string    `json:"rule,omitempty"` // the safety rule (DESIGN.md §3) that shaped the decision

	Probe probeView `json:"probe"`
	Load  loadView  `json:"load"`

	Disagreement bool     `json:"membership_disagreement"`
	MissingFrom  []string `json:"missing_from,omitempty"`

	Want    wantView    `json:"want"`
	HAProxy haproxyView `json:"haproxy"`

	History []Sample `json:"history"`
}

// probeView is the last /_up probe. A hung node's last answer is not current: Current
// says whether the last probe was answered; AnswerAge is how old the last answer is.
type probeView struct {
	UpStatus   string    `json:"last_up_status,omitempty"` // what the last answer said ("ok", "nolb", ...)
	LastProbe  time.Time `json:"last_probe"`
	ProbeAge   float64   `json:"last_probe_age_seconds"`
	LastAnswer time.Time `json:"last_answer"`
	AnswerAge  float64   `json:"last_answer_age_seconds"` // -1: never answered
	Current    bool      `json:"answered"`                // the last probe was answered
	Failure    string    `json:"failure,omitempty"`       // why probes fail, when they do
	LatencyMS  float64   `json:"latency_ewma_ms"`
	Silent     bool      `json:"silent,omitempty"`
	AuthHang   bool      `json:"auth_blocked,omitempty"`
	NoData     bool      `json:"data_unavailable,omitempty"`
}

type loadView struct {
	Score    float64 `json:"score"`
	Known    bool    `json:"known"`
	Signal   string  `json:"signal"` // the signal that sets the score
	Value    float64 `json:"signal_value"`
	Limit    float64 `json:"signal_saturates_at"`
	RunQueue float64 `json:"run_queue"`
	JSProcs  float64 `json:"os_proc_count"`
}

type wantView struct {
	State  string `json:"state,omitempty"`
	Weight int    `json:"weight"` // -1: left alone
	Reason string `json:"reason,omitempty"`
}

type haproxyView struct {
	Reported bool   `json:"reported"` // false in agent mode or before HAProxy answered
	Admin    string `json:"admin,omitempty"`
	Op       string `json:"op,omitempty"`
	Weight   int    `json:"weight"`
	Sessions int    `json:"sessions"`
	Check    string `json:"check,omitempty"`
	Matches  bool   `json:"matches_want"`
	// Pending: commands for this server were sent this pass (HAProxy's state above is
	// what it reported before them).
	Pending []string `json:"sent_this_pass,omitempty"`
}

func (a *app) status() statusView {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	now := time.Now()
	v := statusView{Version: version, Now: now.UTC(), Mode: "agent", Backend: a.cfg.HAProxy.Backend, FailOpen: last.dec.FailOpen,
		Unmapped: last.unmapped, Unwatched: last.unwatched, ClusterN: a.runner.ClusterN(), MinReady: a.cfg.Policy.MinReady,
		Budget: fmt.Sprintf("at most %d load drain(s)", a.cfg.Policy.MaxLoadDrains), Kube: "off", ChartSpan: historySpan.String()}
	if last.dec.BudgetExhausted {
		v.Budget += ": used up"
	}
	if a.rt != nil {
		v.Mode = "runtime"
	}
	if a.cfg.DryRun {
		v.Mode += " (dry run)"
	}
	if !last.at.IsZero() {
		v.LastPass = last.at.UTC().Format(time.RFC3339Nano)
	}
	if last.haproxyErr != nil {
		v.HAProxyErr = last.haproxyErr.Error()
	}
	if a.kube != nil {
		v.Leader = a.kube.IsLeader()
		v.Kube = "follower"
		if v.Leader {
			v.Kube = "leader"
		}
	}
	statuses := last.statuses
	if statuses == nil {
		statuses = a.runner.Snapshot()
	}
	for _, st := range statuses {
		v.Nodes = append(v.Nodes, a.nodeStatus(st, last, now))
	}
	v.Blast = a.blastView(statuses)
	v.Timeline, v.TimelineTotal = a.timeline.events()
	return v
}

func (a *app) nodeStatus(st checks.Status, last passState, now time.Time) nodeView {
	nv := nodeView{Node: st.Node, ErlangName: st.ErlangName, Server: last.servers[st.Node],
		Verdict: st.Verdict.String(), Reason: st.Reason, Since: st.Since.UTC(), Verified: st.Verified,
		Disagreement: st.Disagreement, MissingFrom: st.MissingFrom, History: a.history.series(st.Node)}
	p := probeView{UpStatus: string(st.UpStatus), LastProbe: st.LastProbe.UTC(), ProbeAge: age(now, st.LastProbe),
		LastAnswer: st.LastOK.UTC(), AnswerAge: age(now, st.LastOK), LatencyMS: float64(st.LatencyEWMA.Microseconds()) / 1000,
		Silent: st.Silent, AuthHang: st.AuthBlocked, NoData: st.DataUnavailable}
	p.Current = !st.LastOK.IsZero() && !st.LastOK.Before(st.LastProbe)
	if !p.Current && !st.LastProbe.IsZero() {
		p.Failure = probeFailure(st)
	}
	nv.Probe = p
	nv.Load = loadView{Score: st.Score, Known: st.ScoreKnown, Signal: st.ScoreSignal, RunQueue: st.Signals.RunQueue, JSProcs: st.Signals.JSProcs}
	nv.Load.Value, nv.Load.Limit = signalValue(a.cfg.Checks.Load, st.Signals, st.ScoreSignal)

	nv.Want.Weight = -1
	w, wanted := last.dec.Desired.Servers[nv.Server]
	if wanted {
		nv.Want = wantView{State: string(w.State), Weight: w.Weight, Reason: w.Reason}
	}
	if last.observed != nil {
		for _, s := range last.observed.Servers {
			if s.Name != nv.Server {
				continue
			}
			nv.HAProxy = haproxyView{Reported: true, Admin: string(s.Admin), Op: opState(s.OpState), Weight: s.Weight,
				Sessions: s.CurConns, Check: s.CheckDesc}
			nv.HAProxy.Matches = !wanted || (s.Admin == w.State && (w.Weight < 0 || s.UWeight == w.Weight))
		}
		for _, c := range last.commands {
			if c.Server == nv.Server {
				nv.HAProxy.Pending = append(nv.HAProxy.Pending, c.Text)
			}
		}
	}
	nv.Rule = a.ruleFor(st, nv, last)
	return nv
}

// probeFailure says why the last probe went unanswered: the full (redacted) error when
// the probes keep it, else the verdict's reason.
func probeFailure(st checks.Status) string {
	switch {
	case st.Silent:
		return "timeout: no answer at all (authenticated and unauthenticated requests)"
	case st.AuthBlocked:
		return "authenticated requests time out while an unauthenticated one answers 401: authentication waits on a hung peer"
	case st.LastError != "":
		return st.LastError // redacted by couch
	case st.Verdict == checks.Down:
		return st.Reason
	}
	return "last probe failed (not yet " + strconv.Quote("down") + ": fall count not reached)"
}

// ruleFor names the safety rule of DESIGN.md §3 (or the policy step) that shaped what
// couchwatch wants for the node this pass.
func (a *app) ruleFor(st checks.Status, nv nodeView, last passState) string {
	for _, s := range last.skips {
		if s.Server == nv.Server && nv.Server != "" {
			return "refused " + string(s.Want) + ": " + skipRule(s.Reason)
		}
	}
	switch {
	case nv.Server == "":
		return "no HAProxy server: never guessed (COUCHWATCH_SERVER_MAP)"
	case last.dec.FailOpen:
		return "rule 1: fail open: every node looks bad, every server handed back to HAProxy"
	case st.Verdict == checks.Unknown:
		return "unknown never acts"
	case st.Verdict == checks.Degraded && nv.Want.State == string(haproxy.StateDrain):
		return "rule 2: load drain within the budget (COUCHWATCH_MAX_LOAD_DRAINS)"
	case st.Verdict == checks.Degraded:
		return "rule 2: drain budget used up: stays ready at minimum weight"
	case st.Verdict == checks.Drain:
		return "operator intent (maintenance_mode): drain, maint once HAProxy reports no sessions"
	case st.Verdict == checks.Down:
		return "down: maint; rule 3: ready again only after rise good probes"
	case a.rt == nil:
		return "rule 5: agent mode: HAProxy's agent-check is the one writer"
	case nv.HAProxy.Reported && !nv.HAProxy.Matches && len(nv.HAProxy.Pending) == 0:
		return "rule 4: HAProxy differs from what couchwatch wants: repaired at the next pass"
	}
	return ""
}

// signalValue returns the raw value of the named load signal and where it saturates
// (latencies in ms), mirroring checks.LoadConfig.Score.
func signalValue(c checks.LoadConfig, s checks.Signals, name string) (float64, float64) {
	switch name {
	case "run_queue":
		return s.RunQueue, c.RunQueue
	case "run_queue_dirty_cpu":
		return s.DirtyCPU, c.DirtyCPU
	case "couch_server":
		return s.CouchServer, c.MsgQueue
	case "rexi_server":
		return s.RexiServer, c.MsgQueue
	case "rexi_buffer":
		return s.RexiBuffer, c.MsgQueue
	case "couch_file_p99":
		return s.CouchFileP99, c.CouchFile
	case "os_proc_count":
		limit := c.JSProcs // COUCHWATCH_JS_PROCESS_LIMIT, else CouchDB's os_process_limit
		if limit <= 0 {
			limit = s.JSLimit
		}
		if limit <= 0 {
			limit = checks.DefaultJSProcessLimit
		}
		return s.JSProcs, limit
	case "system_latency":
		return float64(s.SystemLatency.Microseconds()) / 1000, float64(c.SysLatency.Microseconds()) / 1000
	case "active_tasks":
		return s.Tasks["indexer"] + s.Tasks["database_compaction"] + s.Tasks["view_compaction"], c.Tasks
	case "latency":
		return float64(s.LatencyEWMA.Microseconds()) / 1000, float64(c.Latency.Microseconds()) / 1000
	}
	return 0, 0
}

func opState(s int) string {
	switch s {
	case 0:
		return "stopped"
	case 1:
		return "starting"
	case 2:
		return "running"
	case 3:
		return "stopping"
	}
	return strconv.Itoa(s)
}

// age is now - t in seconds, -1 for a zero t.
func age(now, t time.Time) float64 {
	if t.IsZero() {
		return -1
	}
	return now.Sub(t).Seconds()
}

func (a *app) statusJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a.status())
}
