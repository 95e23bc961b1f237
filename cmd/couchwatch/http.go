package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/medic/couchwatch/checks"
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

// readyz: couchwatch can do its job: every node has its first verdict (none is still
// unknown) and, in runtime mode, HAProxy's runtime API answered the last pass.
func (a *app) readyz(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	if why := notReady(last, a.rt != nil); why != "" {
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// notReady says why couchwatch is not ready after the pass last ("" = ready).
func notReady(last passState, runtime bool) string {
	unknown := 0
	for _, s := range last.statuses {
		if s.Verdict == checks.Unknown {
			unknown++
		}
	}
	switch {
	case last.at.IsZero():
		return "no pass yet"
	case len(last.statuses) == 0 || unknown > 0:
		return fmt.Sprintf("waiting for the first verdicts: %d of %d nodes unknown", unknown, len(last.statuses))
	case runtime && last.haproxyErr != nil:
		return "haproxy runtime api: " + last.haproxyErr.Error()
	case runtime && last.observed == nil:
		return "haproxy runtime api not read yet"
	}
	return ""
}
