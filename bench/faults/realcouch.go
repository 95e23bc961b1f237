package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

func realCouchScenarios() []scenario {
	return []scenario{
		{Name: "auth", Run: runAuthHang},
		{Name: "spiky", Run: runSpiky},
	}
}

// CHT's backend timeouts (connect 25 min, client ~4 h, server 100 h), in ms.
var chtTimeouts = []string{"connect 1500000", "client 15000000", "server 360000000"}

func serverName(i int) string { return fmt.Sprintf("couchdb-%d", i+1) }

// stack is a simulated cluster behind a real HAProxy, and couchwatch when wanted.
type stack struct {
	cluster *couchtest.Cluster
	hap     *haproxytest.Proc
	cw      *benchkit.Couchwatch
}

func (s *stack) close() {
	if s.cw != nil {
		_ = s.cw.Stop()
	}
	if s.hap != nil {
		s.hap.Close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// startStack starts the cluster, HAProxy (hapOpt's servers are filled in) and, when
// tuning is not nil, couchwatch in runtime-API mode.
func startStack(ctx context.Context, copt couchtest.Options, hapOpt haproxytest.Options, bin string, tuning map[string]string) (*stack, error) {
	s := &stack{}
	var err error
	if s.cluster, err = couchtest.Start(3, copt); err != nil {
		return nil, err
	}
	for i, n := range s.cluster.Nodes() {
		hapOpt.Servers = append(hapOpt.Servers, haproxytest.ServerSpec{Name: serverName(i), Addr: n.Addr()})
	}
	if s.hap, err = haproxytest.Start(hapOpt); err != nil {
		s.close()
		return nil, err
	}
	if tuning != nil {
		s.cw, err = benchkit.StartCouchwatch(ctx, bin, benchkit.CouchwatchEnv{Servers: s.cluster.Targets(),
			User: s.cluster.User(), Password: s.cluster.Password(), Socket: s.hap.Socket(), Tuning: tuning}, 30*time.Second)
		if err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// tracker polls HAProxy's "show servers state" and keeps each server's changes.
type tracker struct {
	t0 time.Time

	mu      sync.Mutex
	last    map[string]benchkit.ServerState
	events  []event
	weights map[string][]int // every polled weight while ready
	wchange map[string]int   // user-weight changes
	achange map[string]int   // admin-state changes
	errs    int
}

type event struct {
	at     time.Duration
	server string
	in     bool // back in rotation (else: out)
}

func track(ctx context.Context, sock, backend string, poll time.Duration) (*tracker, func()) {
	tr := &tracker{t0: time.Now(), weights: map[string][]int{}, wchange: map[string]int{}, achange: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			st, err := benchkit.ReadStates(sock, backend)
			tr.observe(st, err)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return tr, func() { cancel(); <-done }
}

func (tr *tracker) mark() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.t0, tr.events = time.Now(), nil
	clear(tr.weights)
	clear(tr.wchange)
	clear(tr.achange)
}

func (tr *tracker) observe(st map[string]benchkit.ServerState, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		tr.errs++
		return
	}
	at := time.Since(tr.t0)
	for name, s := range st {
		old, seen := tr.last[name]
		if s.Admin == 0 {
			tr.weights[name] = append(tr.weights[name], s.UWeight)
		}
		if !seen {
			continue
		}
		if old.UWeight != s.UWeight {
			tr.wchange[name]++
		}
		if old.Admin != s.Admin {
			tr.achange[name]++
		}
		if old.InRotation() != s.InRotation() {
			tr.events = append(tr.events, event{at: at, server: name, in: s.InRotation()})
		}
	}
	tr.last = st
}

// outAt says for each server when it left and came back, from the marked time.
func (tr *tracker) timeline() map[string][]event {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[string][]event{}
	for _, e := range tr.events {
		out[e.server] = append(out[e.server], e)
	}
	return out
}

func (tr *tracker) inRotation(server string) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.last[server].InRotation()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// authMethod is one way of running HAProxy through the auth-coupled hang.
type authMethod struct {
	Name   string
	Tuning map[string]string // couchwatch's, nil: no couchwatch
	HAP    func(user, pass string) haproxytest.Options
}

func authMethods() []authMethod {
	return []authMethod{
		{Name: "couchwatch (defaults, runtime API, no HAProxy checks)", Tuning: map[string]string{},
			HAP: func(string, string) haproxytest.Options { return haproxytest.Options{Timeouts: chtTimeouts} }},
		{Name: "HAProxy httpchk, tuned (Basic auth, no couchwatch)", HAP: func(user, pass string) haproxytest.Options {
			auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
			return haproxytest.Options{
				ServerExtra:  "check inter 250ms fastinter 100ms fall 1 rise 2",
				BackendExtra: []string{"option httpchk GET /_up", `http-check send hdr Authorization "Basic ` + auth + `"`, "http-check disable-on-404"},
				Timeouts:     append(slices.Clone(chtTimeouts), "check 250ms"),
			}
		}},
	}
}

// runAuthHang: the node holding the admin's _users shard hangs (CHT: admin in config
// only, n=1). Every authenticated request on every node waits until net_ticktime.
func runAuthHang(ctx context.Context, cfg config, bin string, progress io.Writer) (section, error) {
	sec := section{Title: "The auth-coupled hang: the node holding the _users shard hangs",
		Intro: fmt.Sprintf("3 nodes (couchtest, faithful: admin in config only, its `_users` shard on couchdb-1), "+
			"CHT's backend (`leastconn`, `retries 5`, `redispatch`, CHT's timeouts). %.0f req/s open loop "+
			"(`GET /medic`, Basic auth, client timeout %s) through HAProxy. At t=0 couchdb-1 hangs (`Hang`: TCP "+
			"accepted, nothing answered); every authenticated request on every node then waits until net_ticktime "+
			"(%s here; 60 s on a real cluster). Observed until %s after it, then `Resume`. Failed = non-200 or client "+
			"error; slow = answered 200 after more than 1 s.\n", cfg.Rate, cfg.ClientTimeout, cfg.Tick, cfg.After)}
	sec.Table = benchkit.Table{Header: []string{"method", "went out (after the hang)", "came back", "couchdb-1 out at the end",
		"failed / sent", "failures", "slow >1s", "fail open"}}
	for _, m := range authMethods() {
		fmt.Fprintf(progress, "  %s\n", m.Name)
		row, err := authRun(ctx, cfg, bin, m)
		if err != nil {
			return sec, fmt.Errorf("%s: %w", m.Name, err)
		}
		sec.Table.Add(row...)
	}
	sec.Notes = []string{
		"Requests on the healthy nodes cannot finish before net_ticktime whatever the load balancer does: CouchDB's authentication waits for the hung node. The fix for that is CouchDB's (an admin `_users` doc, or `require_valid_user_except_for_up` for the checks); what couchwatch controls is that only the hung node goes out, stays out, and that the others are not taken out with it.",
	}
	return sec, nil
}

func authRun(ctx context.Context, cfg config, bin string, m authMethod) ([]string, error) {
	copt := couchtest.Options{NetTickTime: cfg.Tick}
	user, pass := couchtest.DefaultUser, couchtest.DefaultPassword
	s, err := startStack(ctx, copt, m.HAP(user, pass), bin, m.Tuning)
	if err != nil {
		return nil, err
	}
	defer s.close()
	backend := s.hap.Backend()
	if err := benchkit.WaitFor(ctx, 20*time.Second, 20*time.Millisecond, func() (bool, error) {
		st, err := benchkit.ReadStates(s.hap.Socket(), backend)
		if err != nil {
			return false, nil
		}
		for _, x := range st {
			if !x.InRotation() {
				return false, nil
			}
		}
		return len(st) == 3, nil
	}); err != nil {
		return nil, fmt.Errorf("servers never all in rotation: %w", err)
	}
	tr, stopTrack := track(ctx, s.hap.Socket(), backend, cfg.Poll)
	defer stopTrack()

	pre := time.Second
	window := pre + cfg.Tick + cfg.After
	lc := benchkit.LoadConfig{URL: "http://" + s.hap.FrontendAddr() + "/medic", Rate: cfg.Rate,
		Max: int(cfg.Rate*window.Seconds()) + 1, Timeout: cfg.ClientTimeout, User: user, Password: pass}
	stop := make(chan struct{})
	resc := make(chan []benchkit.Result, 1)
	go func() { resc <- benchkit.RunLoad(ctx, lc, stop) }()
	if err := benchkit.Sleep(ctx, pre); err != nil {
		close(stop)
		<-resc
		return nil, err
	}
	shard := s.cluster.UsersShardNode()
	tr.mark()
	t0 := time.Now()
	shard.Hang()
	err = benchkit.Sleep(ctx, cfg.Tick+cfg.After)
	hungOut := !tr.inRotation(serverName(0))
	tl := tr.timeline()
	close(stop)
	// Resume first so the requests held by the hung node finish (slow, not failed), as
	// bench/failover counts them.
	shard.Resume()
	results := <-resc
	if err != nil {
		return nil, err
	}
	failOpen := "-"
	if s.cw != nil {
		if mt, err := s.cw.Metrics(ctx); err == nil {
			failOpen = fmt.Sprintf("%.0f times", mt.Sum("couchwatch_fail_open_total", nil))
		}
	}
	var outs, backs []string
	names := make([]string, 0, len(tl))
	for n := range tl {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, e := range tl[n] {
			if e.in {
				backs = append(backs, n+" @ "+secs(e.at))
			} else {
				outs = append(outs, n+" @ "+secs(e.at))
			}
		}
	}
	failed, slow, sent := 0, 0, 0
	reasons := map[string]int{}
	for _, r := range results {
		if r.Due.Before(t0.Add(-pre)) {
			continue
		}
		sent++
		switch {
		case !r.OK():
			failed++
			k := "error"
			if r.Status != 0 {
				k = fmt.Sprint(r.Status)
			} else if r.Err != nil && strings.Contains(r.Err.Error(), "Timeout") {
				k = "client timeout"
			}
			reasons[k]++
		case r.Latency > time.Second:
			slow++
		}
	}
	var why []string
	for k, v := range reasons {
		why = append(why, fmt.Sprintf("%s x%d", k, v))
	}
	sort.Strings(why)
	return []string{m.Name, orNone(outs), orNone(backs), yesNo(hungOut), fmt.Sprintf("%d / %d", failed, sent),
		strings.Join(why, ", "), fmt.Sprint(slow), failOpen}, nil
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// runSpiky: node 2 is loaded with the spiky run_queue of a real loaded CouchDB (median
// ~1, p90 ~30, max ~110) and its slow _system (100-700 ms); the weight changes of every
// server are counted, damped (the defaults) and undamped (the baseline: each sample
// alone, as couchwatch did before).
func runSpiky(ctx context.Context, cfg config, bin string, progress io.Writer) (section, error) {
	sec := section{Title: "Weights during a spiky load",
		Intro: fmt.Sprintf("3 nodes; couchdb-2 loaded (`SetLoad(1)`: run_queue drawn per sample from the measured "+
			"distribution, median ~1, p90 ~30, max ~110; `_system` 100-700 ms; /_up 5-40 ms) for %s. couchwatch in runtime-API mode at its "+
			"defaults (`_system` every 5 s) but `COUCHWATCH_MAX_LOAD_DRAINS=0`, so weights alone steer. HAProxy's "+
			"`show servers state` polled every %s from the start of the load; a weight change is a change of `srv_uweight`.\n", cfg.Spiky, cfg.Poll)}
	sec.Table = benchkit.Table{Header: []string{"method", "server", "weight changes", "weight min / median / max", "time at weight <= 30", "state changes"}}
	methods := []struct {
		name   string
		tuning map[string]string
	}{
		{"damped (defaults: run_queue peak over 60 s, _system latency)", map[string]string{"COUCHWATCH_MAX_LOAD_DRAINS": "0"}},
		{"undamped baseline (COUCHWATCH_LOAD_WINDOW=0, _system latency off)", map[string]string{"COUCHWATCH_MAX_LOAD_DRAINS": "0",
			"COUCHWATCH_LOAD_WINDOW": "0s", "COUCHWATCH_LOAD_SYSTEM_LATENCY": "1m"}},
	}
	total := map[string]int{}
	for _, m := range methods {
		fmt.Fprintf(progress, "  %s\n", m.name)
		rows, changes, err := spikyRun(ctx, cfg, bin, m.name, m.tuning)
		if err != nil {
			return sec, fmt.Errorf("%s: %w", m.name, err)
		}
		total[m.name] = changes
		for _, r := range rows {
			sec.Table.Add(r...)
		}
	}
	d, u := total[methods[0].name], total[methods[1].name]
	sec.Notes = []string{fmt.Sprintf("weight changes over all servers: damped %d, undamped %d (%s of the baseline).", d, u, benchkit.Ratio(float64(d), float64(u)))}
	return sec, nil
}

func spikyRun(ctx context.Context, cfg config, bin, name string, tuning map[string]string) ([][]string, int, error) {
	s, err := startStack(ctx, couchtest.Options{}, haproxytest.Options{Timeouts: chtTimeouts}, bin, tuning)
	if err != nil {
		return nil, 0, err
	}
	defer s.close()
	if err := s.cw.WaitVerdicts(ctx, "up", 3, 20*time.Second); err != nil {
		return nil, 0, err
	}
	if err := benchkit.WaitFor(ctx, 20*time.Second, 20*time.Millisecond, func() (bool, error) {
		st, err := benchkit.ReadStates(s.hap.Socket(), s.hap.Backend())
		if err != nil || len(st) != 3 {
			return false, nil
		}
		for _, x := range st {
			if x.UWeight != 100 {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, 0, fmt.Errorf("weights never all 100: %w", err)
	}
	tr, stopTrack := track(ctx, s.hap.Socket(), s.hap.Backend(), cfg.Poll)
	defer stopTrack()
	tr.mark()
	s.cluster.Nodes()[1].SetLoad(1)
	if err := benchkit.Sleep(ctx, cfg.Spiky); err != nil {
		return nil, 0, err
	}
	s.cluster.Nodes()[1].SetLoad(0)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var rows [][]string
	changes := 0
	for i := range 3 {
		srv := serverName(i)
		ws := slices.Clone(tr.weights[srv])
		slices.Sort(ws)
		low := 0
		for _, w := range ws {
			if w <= 30 {
				low++
			}
		}
		mm := "-"
		share := "-"
		if len(ws) > 0 {
			mm = fmt.Sprintf("%d / %d / %d", ws[0], ws[len(ws)/2], ws[len(ws)-1])
			share = fmt.Sprintf("%.0f %%", 100*float64(low)/float64(len(ws)))
		}
		changes += tr.wchange[srv]
		rows = append(rows, []string{name, srv, fmt.Sprint(tr.wchange[srv]), mm, share, fmt.Sprint(tr.achange[srv])})
	}
	return rows, changes, nil
}
