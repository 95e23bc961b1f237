package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/kube"
)

// pass runs one round: snapshot the verdicts, decide, and (in runtime mode, when
// useRuntime) reconcile HAProxy. It returns the HAProxy error, if any.
func (a *app) pass(ctx context.Context, useRuntime bool) error {
	statuses := a.verdicts.Snapshot()
	now := a.clk.Now()
	a.mu.Lock()
	prev := a.last
	a.mu.Unlock()

	ps := passState{at: now, statuses: statuses, pstate: prev.pstate}
	budget := haproxy.Budget{MinReady: a.cfg.Policy.MinReady}
	var herr error
	switch {
	case a.rec == nil:
		// Agent mode: no runtime API. HAProxy's servers are assumed ready; Plan still
		// applies the safety rules, so agent replies never take the last server out.
		ps.servers, ps.unmapped = mapServers(a.targets, a.explMap, nil, a.hosts.Addrs)
		ps.dec, ps.pstate = decide(a.policyConfig(), a.cfg.HAProxy.Backend, statuses, ps.servers, nil, prev.pstate, now)
		obs := assumedObserved(a.cfg.HAProxy.Backend, ps.servers)
		_, skips := haproxy.Plan(ps.dec.Desired, obs, budget)
		ps.effective, ps.skips = effective(ps.dec.Desired, obs, skips), skips
	case !useRuntime:
		// Backing off after a HAProxy error: keep what we knew.
		ps.servers, ps.unmapped, ps.unwatched, ps.dec, ps.effective, ps.observed = prev.servers, prev.unmapped, prev.unwatched, prev.dec, prev.effective, prev.observed
		ps.haproxyErr, ps.skips, ps.outliers = prev.haproxyErr, prev.skips, prev.outliers
	default:
		res, err := a.rec.ReconcileWith(ctx, func(obs haproxy.Observed) haproxy.Desired {
			ps.servers, ps.unmapped = mapServers(a.targets, a.explMap, &obs, a.hosts.Addrs)
			ps.unwatched = unwatched(obs, ps.servers)
			ps.statuses = a.trafficOutliers(&ps, prev.outliers, obs) // HAProxy's own traffic: a second signal
			ps.dec, ps.pstate = decide(a.policyConfig(), a.cfg.HAProxy.Backend, ps.statuses, ps.servers, &obs, prev.pstate, now)
			return ps.dec.Desired
		})
		herr = err
		if err != nil && !errors.Is(err, haproxy.ErrCommandsFailed) {
			// Not read, or not answered: keep what we knew. (Refused commands are
			// not this: HAProxy answered, and each refusal is logged and counted.)
			ps.haproxyErr = err
			ps.servers, ps.unmapped, ps.unwatched, ps.dec, ps.effective = prev.servers, prev.unmapped, prev.unwatched, prev.dec, prev.effective
			ps.skips = prev.skips
		} else {
			ps.observed = &res.Observed
			ps.effective = effective(ps.dec.Desired, res.Observed, res.Skipped)
			ps.commands, ps.skips = res.Commands, res.Skipped
		}
	}

	if !slices.Equal(ps.unmapped, prev.unmapped) && len(ps.unmapped) > 0 {
		a.log.Warn("couchdb nodes without a haproxy server", "backend", a.cfg.HAProxy.Backend, "nodes", strings.Join(ps.unmapped, ","),
			"reason", "no server with that name or address:port; set COUCHWATCH_SERVER_MAP")
	}
	if !slices.Equal(ps.unwatched, prev.unwatched) && len(ps.unwatched) > 0 {
		a.log.Warn("haproxy servers without a couchdb node: left alone", "backend", a.cfg.HAProxy.Backend,
			"servers", strings.Join(ps.unwatched, ","), "reason", "not in COUCHDB_SERVERS by name or address:port")
	}
	if ps.dec.FailOpen && !prev.dec.FailOpen {
		a.failOpenTotal.Inc()
		a.log.Error("fail open: every couchdb node looks bad at once; handing every server back to haproxy",
			"backend", a.cfg.HAProxy.Backend, "reason", "more likely couchwatch's own view (network, credentials) than the whole cluster")
	} else if !ps.dec.FailOpen && prev.dec.FailOpen {
		a.log.Warn("fail open ended", "backend", a.cfg.HAProxy.Backend)
	}
	a.failOpen.Set(b2f(ps.dec.FailOpen))
	a.budgetExhausted.Set(b2f(ps.dec.BudgetExhausted))

	if a.kube != nil {
		loads := make([]kube.CouchLoad, 0, len(statuses))
		for _, st := range statuses {
			loads = append(loads, kube.CouchLoad{Server: st.Node, Degraded: st.Verdict == checks.Degraded,
				Score: st.Score, Known: st.Verdict != checks.Unknown && st.ScoreKnown})
		}
		a.kube.Update(loads)
	}

	a.recordPass(prev, ps) // timeline and charts (status page)
	a.mu.Lock()
	a.last = ps
	a.mu.Unlock()
	return herr
}

func (a *app) policyConfig() PolicyConfig {
	p := a.cfg.Policy
	p.loadLow, p.loadHigh = a.cfg.Checks.Load.Low, a.cfg.Checks.Load.High
	return p
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unwatched lists the backend's servers that no CouchDB node maps to, in HAProxy's order.
func unwatched(obs haproxy.Observed, servers map[string]string) []string {
	mapped := make(map[string]bool, len(servers))
	for _, s := range servers {
		mapped[s] = true
	}
	var out []string
	for _, s := range obs.Servers {
		if !mapped[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out
}

// assumedObserved is the backend as agent mode assumes it: every mapped server ready.
func assumedObserved(backend string, servers map[string]string) haproxy.Observed {
	o := haproxy.Observed{Backend: backend}
	for _, s := range servers {
		o.Servers = append(o.Servers, haproxy.Server{Name: s, Admin: haproxy.StateReady, OpUp: true, OpState: 2, UWeight: 1, Weight: 1, IWeight: 1})
	}
	slices.SortFunc(o.Servers, func(x, y haproxy.Server) int { return strings.Compare(x.Name, y.Name) })
	return o
}

// effective is the admin state of each wanted server once the pass is applied: what was
// wanted, except where Plan refused (then what HAProxy has).
func effective(d haproxy.Desired, obs haproxy.Observed, skips []haproxy.Skip) map[string]haproxy.AdminState {
	out := make(map[string]haproxy.AdminState, len(d.Servers))
	for name, w := range d.Servers {
		out[name] = w.State
	}
	for _, s := range skips {
		for _, o := range obs.Servers {
			if o.Name == s.Server {
				out[s.Server] = o.Admin
			}
		}
	}
	return out
}

// mapServers finds the HAProxy server of each CouchDB node: COUCHWATCH_SERVER_MAP, else
// the server named after the host (as CHT names them), else the server whose address and
// port are the node's (host names through the cache of resolved addresses: no lookup
// here). obs is nil in agent mode, where the name is used. Nodes with no
// server, or whose server is already taken, are returned as unmapped: never guessed.
func mapServers(targets []couch.Target, explicit map[string]string, obs *haproxy.Observed, addrs func(host string) []string) (map[string]string, []string) {
	out := map[string]string{}
	taken := map[string]string{}
	var unmapped []string
	for _, t := range targets {
		srv := explicit[t.Name]
		if srv == "" && obs == nil {
			srv = t.Name
		}
		if srv == "" {
			srv = findServer(t, obs, addrs)
		}
		if srv == "" || taken[srv] != "" {
			unmapped = append(unmapped, t.Name)
			continue
		}
		taken[srv] = t.Name
		out[t.Name] = srv
	}
	return out, unmapped
}

func findServer(t couch.Target, obs *haproxy.Observed, addrs func(host string) []string) string {
	for _, s := range obs.Servers {
		if s.Name == t.Name {
			return s.Name
		}
	}
	port, _ := strconv.Atoi(t.URL.Port())
	ips := addrs(t.URL.Hostname())
	for _, s := range obs.Servers {
		if s.Port == port && slices.Contains(ips, s.Addr) {
			return s.Name
		}
	}
	return ""
}

// agentReply answers one HAProxy agent-check. server is what HAProxy sent with
// agent-send ("" with CHT's current config).
func (a *app) agentReply(server string) haproxy.AgentReply {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	switch {
	case last.at.IsZero():
		return haproxy.AgentReply{Words: []string{"up"}, Comment: "couchwatch starting"}
	case a.rec != nil:
		// Runtime mode: the runtime API is the one writer. "up" alone changes no admin
		// state and no weight, so it never contradicts it (DESIGN.md §3 rule 5).
		return haproxy.AgentReply{Words: []string{"up"}, Comment: "couchwatch runtime mode"}
	case server == "":
		return a.clusterReply(last)
	}
	node := ""
	for n, s := range last.servers {
		if s == server {
			node = n
		}
	}
	var st checks.Status
	for _, s := range last.statuses {
		if s.Node == node {
			st = s
		}
	}
	state, ok := last.effective[server]
	switch {
	case node == "":
		return haproxy.AgentReply{Words: []string{"up"}, Comment: "unknown server " + sanitize(server)}
	case !ok:
		return haproxy.AgentReply{Words: []string{"up"}, Comment: node + " " + st.Verdict.String()}
	case state == haproxy.StateReady:
		return haproxy.AgentReply{Words: []string{"up", "ready"}, Comment: node + " " + st.Verdict.String()}
	case state == haproxy.StateDrain:
		return haproxy.AgentReply{Words: []string{"up", "drain"}, Comment: node + " " + st.Reason}
	case st.Verdict == checks.Down:
		return haproxy.AgentReply{Words: []string{"down"}, Comment: node + " " + st.Reason}
	default:
		return haproxy.AgentReply{Words: []string{"up", "maint"}, Comment: node + " " + st.Reason}
	}
}

// clusterReply is the one answer for every server when HAProxy does not say which
// server asks (CHT's config). serve: up (healthy coordinators keep serving); fail: down
// while a node is lost, unless every node looks bad (fail open).
func (a *app) clusterReply(last passState) haproxy.AgentReply {
	var down []string
	up := 0
	for _, st := range last.statuses {
		switch st.Verdict {
		case checks.Down:
			down = append(down, st.Node)
		case checks.Up, checks.Degraded, checks.Drain:
			up++
		}
	}
	summary := fmt.Sprintf("%d/%d nodes up", up, len(last.statuses))
	if a.cfg.OnNodeLoss == "fail" && len(down) > 0 && !last.dec.FailOpen {
		return haproxy.AgentReply{Words: []string{"down"}, Comment: "node lost: " + strings.Join(down, ",")}
	}
	return haproxy.AgentReply{Words: []string{"up"}, Comment: summary}
}

// sanitize keeps an agent-send string printable and short before it is echoed.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
