package main

import (
	"fmt"
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
