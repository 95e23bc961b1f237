package main

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /status.json", a.statusJSON)
	mux.HandleFunc("GET /{$}", a.statusPage)
	return mux
}

// healthz: the main loop is alive (it ran a pass recently).
func (a *app) healthz(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	at := a.last.at
	a.mu.Unlock()
	limit := max(10*a.cfg.Reconcile, 10*time.Second)
	if !at.IsZero() && time.Since(at) > limit {
		http.Error(w, fmt.Sprintf("main loop stalled: last pass %s ago", time.Since(at).Round(time.Millisecond)), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// readyz: couchwatch can do its job: it has a verdict for the nodes and, in runtime
// mode, HAProxy's runtime API answered the last pass.
func (a *app) readyz(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	switch {
	case last.at.IsZero():
		http.Error(w, "no pass yet", http.StatusServiceUnavailable)
	case a.rt != nil && last.haproxyErr != nil:
		http.Error(w, "haproxy runtime api: "+last.haproxyErr.Error(), http.StatusServiceUnavailable)
	case a.rt != nil && last.observed == nil:
		http.Error(w, "haproxy runtime api not read yet", http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ready")
	}
}

// nodeView is one row of the status page and status.json.
type nodeView struct {
	Node         string  `json:"node"`
	Server       string  `json:"server"`
	Verdict      string  `json:"verdict"`
	Reason       string  `json:"reason"`
	Since        string  `json:"since"`
	Verified     bool    `json:"verified"`
	Score        float64 `json:"load_score"`
	ScoreSignal  string  `json:"load_signal"`
	UpStatus     string  `json:"up_status"`
	RunQueue     float64 `json:"run_queue"`
	LatencyMS    float64 `json:"latency_ewma_ms"`
	Disagreement bool    `json:"membership_disagreement"`
	Want         string  `json:"want"`
	Admin        string  `json:"haproxy_admin"`
	Weight       int     `json:"haproxy_weight"`
	Conns        int     `json:"haproxy_connections"`
}

type statusView struct {
	Mode       string     `json:"mode"`
	Backend    string     `json:"backend"`
	LastPass   string     `json:"last_pass"`
	FailOpen   bool       `json:"fail_open"`
	HAProxyErr string     `json:"haproxy_error,omitempty"`
	Unmapped   []string   `json:"unmapped,omitempty"`
	Unwatched  []string   `json:"unwatched_servers,omitempty"`
	ClusterN   int        `json:"cluster_n"`
	Leader     bool       `json:"kube_leader"`
	Nodes      []nodeView `json:"nodes"`
}

func (a *app) status() statusView {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	v := statusView{Mode: "agent", Backend: a.cfg.HAProxy.Backend, FailOpen: last.dec.FailOpen, Unmapped: last.unmapped, Unwatched: last.unwatched,
		ClusterN: a.runner.ClusterN()}
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
	}
	statuses := last.statuses
	if statuses == nil {
		statuses = a.runner.Snapshot()
	}
	for _, st := range statuses {
		nv := nodeView{Node: st.Node, Verdict: st.Verdict.String(), Reason: st.Reason, Since: st.Since.UTC().Format(time.RFC3339),
			Verified: st.Verified, Score: st.Score, ScoreSignal: st.ScoreSignal,
			UpStatus: string(st.UpStatus), RunQueue: st.Signals.RunQueue, LatencyMS: float64(st.LatencyEWMA.Microseconds()) / 1000,
			Disagreement: st.Disagreement, Server: last.servers[st.Node], Weight: -1}
		if w, ok := last.dec.Desired.Servers[nv.Server]; ok {
			nv.Want = string(w.State)
		}
		if last.observed != nil {
			for _, s := range last.observed.Servers {
				if s.Name == nv.Server {
					nv.Admin, nv.Weight, nv.Conns = string(s.Admin), s.Weight, s.CurConns
				}
			}
		}
		v.Nodes = append(v.Nodes, nv)
	}
	return v
}

func (a *app) statusJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a.status())
}

var statusTmpl = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="1"><title>couchwatch</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.up{background:#dfd}.degraded{background:#ffd}.drain{background:#def}.down{background:#fdd}.unknown{background:#eee}</style></head>
<body><h1>couchwatch</h1>
<p>mode: <b>{{.Mode}}</b> · backend: <b>{{.Backend}}</b> · last pass: {{.LastPass}} · cluster n: {{.ClusterN}}
{{if .FailOpen}}<br><b style="color:#c00">FAIL OPEN: every node looks bad; servers handed back to HAProxy</b>{{end}}
{{if .HAProxyErr}}<br><b style="color:#c00">HAProxy runtime API: {{.HAProxyErr}}</b>{{end}}
{{if .Unmapped}}<br><b>nodes without a HAProxy server: {{range .Unmapped}}{{.}} {{end}}</b>{{end}}
{{if .Unwatched}}<br>HAProxy servers without a CouchDB node (left alone): {{range .Unwatched}}{{.}} {{end}}{{end}}</p>
<table><tr><th>node</th><th>verdict</th><th>reason</th><th>since</th><th>/_up</th><th>load</th><th>latency ms</th><th>server</th><th>want</th><th>HAProxy state</th><th>weight</th><th>conns</th></tr>
{{range .Nodes}}<tr class="{{.Verdict}}"><td>{{.Node}}</td><td>{{.Verdict}}</td><td>{{.Reason}}{{if .Disagreement}} (membership disagreement){{end}}</td><td>{{.Since}}</td>
<td>{{.UpStatus}}</td><td>{{printf "%.2f" .Score}} {{.ScoreSignal}} (run_queue {{.RunQueue}})</td><td>{{printf "%.1f" .LatencyMS}}</td><td>{{.Server}}</td><td>{{.Want}}</td><td>{{.Admin}}</td><td>{{.Weight}}</td><td>{{.Conns}}</td></tr>
{{end}}</table><p><a href="/metrics">metrics</a> · <a href="/status.json">status.json</a> · <a href="/readyz">readyz</a></p></body></html>
`))

func (a *app) statusPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusTmpl.Execute(w, a.status())
}
