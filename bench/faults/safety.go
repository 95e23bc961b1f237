package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// BeforeEnv names an environment variable holding an older couchwatch binary: each
// safety scenario then runs it too and prints its figures as "before", beside this
// tree's as "after", in the same run.
const BeforeEnv = "COUCHWATCH_BENCH_BEFORE"

// safetyRow is one safety rule under a fault, measured by run with one binary.
type safetyRow struct {
	name, what string
	figures    []string
	run        func(ctx context.Context, cfg config, bin string) ([]string, error)
}

// safetyScenarios are the safety rules of issue 14 (and issue 9.6's hung request),
// after realCouchScenarios.
func safetyScenarios() []scenario {
	rows := []safetyRow{
		{name: "serving", what: "couchdb-1 DOWN by HAProxy's own check (couchwatch sees it up), nodes 2 and 3 go nolb",
			figures: []string{"servers in rotation", "requests failed of 20"}, run: runServing},
		{name: "restart", what: "couchwatch starts with node 3 dead (its server in maint), the healthy nodes slow to answer",
			figures: []string{"ready commands for the dead node", "dead node in rotation (HAProxy polled every 2 ms)", "fail_open_total"}, run: runRestart},
		{name: "all-fail", what: "every node stopped at once, 10 trials; then one node crashed, 5 trials",
			figures: []string{"take-out commands in 10 trials", "single crash out of rotation (median)"}, run: runAllFail},
		{name: "capacity", what: "node 3 stopped, then node 2 saturated",
			figures: []string{"couchdb-2 admin state", "couchdb-2 weight", "servers in rotation"}, run: runCapacity},
		{name: "blind", what: "HAProxy's socket gone for -spiky/12 (10 s at the default), node 2 stops meanwhile, then the socket answers again",
			figures: []string{"dead node still ready after the socket answers", "outage log lines"}, run: runBlind},
		{name: "flapping", what: "node 2 stopped and started every 300 ms for -spiky/6 (20 s at the default)",
			figures: []string{"verdict changes", "state commands on couchdb-2"}, run: runFlapping},
		{name: "prefix", what: "couchdb-1 returns from maint while nodes 2 and 3 go nolb, and HAProxy refuses couchdb-1's ready",
			figures: []string{"servers in rotation"}, run: runPrefix},
		{name: "hung-request", what: "a request in flight to node 2 when it hangs, behind timeout server 100h",
			figures: []string{"request ends after its server goes to maint"}, run: runHungRequest},
	}
	var out []scenario
	for _, r := range rows {
		out = append(out, scenario{Name: r.name, Run: r.section})
	}
	return out
}

// section runs the row with the "before" binary (if BeforeEnv is set) and with bin.
func (r safetyRow) section(ctx context.Context, cfg config, bin string, progress io.Writer) (section, error) {
	sec := section{Title: "safety: " + r.name, Intro: r.what + ".",
		Table: benchkit.Table{Header: []string{"figure", "before", "after"}}}
	var got [2][]string
	for i, b := range []string{os.Getenv(BeforeEnv), bin} {
		if b == "" {
			continue
		}
		fmt.Fprintf(progress, "safety %s: %s\n", r.name, []string{"before", "after"}[i])
		var err error
		if got[i], err = r.run(ctx, cfg, b); err != nil {
			return sec, err
		}
	}
	for j, f := range r.figures {
		sec.Table.Add(f, cell(got[0], j), cell(got[1], j))
	}
	if os.Getenv(BeforeEnv) == "" {
		sec.Notes = append(sec.Notes, "before: not measured (set "+BeforeEnv+" to an older couchwatch binary)")
	}
	return sec, nil
}

func cell(vals []string, i int) string {
	if i < len(vals) {
		return vals[i]
	}
	return "-"
}

func runServing(ctx context.Context, cfg config, bin string) ([]string, error) {
	closed, err := benchkit.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(closed)
	r, err := startRig(ctx, bin, rigOpts{haproxy: func(o *haproxytest.Options) {
		o.Servers[0].Extra = "check port " + port + " inter 100ms fall 1 rise 1"
	}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	if _, err := r.waitState(ctx, "couchdb-1", func(s benchkit.ServerState) bool { return s.OpState == 0 }, 5*time.Second); err != nil {
		return nil, err
	}
	for i := 2; i <= 3; i++ {
		if err := r.node(i).SetMaintenance("nolb"); err != nil {
			return nil, err
		}
	}
	_, in, err := r.settled(ctx, 3*time.Second) // let couchwatch act on both
	if err != nil {
		return nil, err
	}
	failed := 0
	client := benchkit.NewClient(2 * time.Second)
	for range 20 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.hap.FrontendAddr()+"/medic", nil)
		req.SetBasicAuth(r.cluster.User(), r.cluster.Password())
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			failed++
		}
		if err == nil {
			resp.Body.Close()
		}
	}
	return []string{strconv.Itoa(in), strconv.Itoa(failed)}, nil
}

func runRestart(ctx context.Context, cfg config, bin string) ([]string, error) {
	var inRotation atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	r, err := startRig(ctx, bin, rigOpts{before: func(r *rig) error {
		r.node(1).SetLatency(100 * time.Millisecond)
		r.node(2).SetLatency(100 * time.Millisecond)
		r.node(3).Stop()
		if _, err := r.hap.Cmd("set server " + backend + "/couchdb-3 state maint"); err != nil {
			return err
		}
		go func() { // HAProxy's own view, every 2 ms, from before couchwatch starts
			defer close(done)
			t := time.NewTicker(2 * time.Millisecond)
			defer t.Stop()
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case now := <-t.C:
					if st, err := r.states(); err == nil && st["couchdb-3"].Admin == 0 {
						inRotation.Add(int64(now.Sub(last)))
					}
					last = now
				}
			}
		}()
		return nil
	}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	_ = r.cw.WaitVerdicts(ctx, "up", 2, 10*time.Second)
	_ = benchkit.Sleep(ctx, time.Second)
	close(stop)
	<-done
	readies := count(r.sent(0), "couchdb-3 state ready")
	opens := r.metric(ctx, "couchwatch_fail_open_total", nil)
	return []string{strconv.Itoa(readies), benchkit.Ms(time.Duration(inRotation.Load())), strconv.FormatFloat(opens, 'f', 0, 64)}, nil
}

func runAllFail(ctx context.Context, cfg config, bin string) ([]string, error) {
	r, err := startRig(ctx, bin, rigOpts{})
	if err != nil {
		return nil, err
	}
	defer r.close()
	var failing []string
	for range 10 {
		from := len(r.cw.Output())
		opens := r.metric(ctx, "couchwatch_fail_open_total", nil)
		for i := 1; i <= 3; i++ {
			r.node(i).Stop()
		}
		_ = benchkit.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, func() (bool, error) {
			return r.metric(ctx, "couchwatch_fail_open_total", nil) > opens, nil
		})
		failing = append(failing, r.sent(from)...) // the recovery may take out a node not yet risen: not counted
		for i := 1; i <= 3; i++ {
			if err := r.node(i).Start(); err != nil {
				return nil, err
			}
		}
		for _, s := range r.names {
			if _, err := r.waitState(ctx, s, ready, 10*time.Second); err != nil {
				return nil, err
			}
		}
		_ = benchkit.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, func() (bool, error) {
			return r.metric(ctx, "couchwatch_fail_open", nil) == 0, nil
		})
	}
	outs := count(failing, " state maint") + count(failing, " state drain")
	var crash []time.Duration
	for range 5 {
		r.node(2).Stop()
		d, err := r.waitState(ctx, "couchdb-2", func(s benchkit.ServerState) bool { return !s.InRotation() }, 10*time.Second)
		if err != nil {
			return nil, err
		}
		crash = append(crash, d)
		if err := r.node(2).Start(); err != nil {
			return nil, err
		}
		if _, err := r.waitState(ctx, "couchdb-2", ready, 10*time.Second); err != nil {
			return nil, err
		}
	}
	return []string{strconv.Itoa(outs), benchkit.Ms(benchkit.Median(crash))}, nil
}

func runCapacity(ctx context.Context, cfg config, bin string) ([]string, error) {
	// A low saturation threshold, so that both builds' load scores call the node
	// saturated (their signals differ: the faithful simulator's run_queue is spiky).
	r, err := startRig(ctx, bin, rigOpts{env: map[string]string{"COUCHWATCH_LOAD_HIGH": "0.4", "COUCHWATCH_LOAD_LOW": "0.1"}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	r.node(3).Stop()
	if _, err := r.waitState(ctx, "couchdb-3", inMaint, 10*time.Second); err != nil {
		return nil, err
	}
	r.node(2).SetLoad(1)
	degraded := map[string]string{"node": r.node(2).Addr(), "verdict": "degraded"}
	if err := benchkit.WaitFor(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		return r.metric(ctx, "couchwatch_node_verdict", degraded) == 1, nil
	}); err != nil {
		return nil, fmt.Errorf("node 2 never degraded: %w", err)
	}
	st, in, err := r.settled(ctx, 2*time.Second) // steady state
	if err != nil {
		return nil, err
	}
	admin := "ready"
	switch s := st["couchdb-2"]; {
	case s.Admin&1 != 0:
		admin = "maint"
	case s.Admin&8 != 0:
		admin = "drain"
	}
	return []string{admin, strconv.Itoa(st["couchdb-2"].UWeight), strconv.Itoa(in)}, nil
}

func runBlind(ctx context.Context, cfg config, bin string) ([]string, error) {
	dir, err := os.MkdirTemp("", "couchwatch-bench-blind-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	link := filepath.Join(dir, "admin.sock")
	r, err := startRig(ctx, bin, rigOpts{socket: link, before: func(r *rig) error { return os.Symlink(r.hap.Socket(), link) }})
	if err != nil {
		return nil, err
	}
	defer r.close()
	if err := os.Remove(link); err != nil {
		return nil, err
	}
	r.node(2).Stop()
	if err := benchkit.Sleep(ctx, min(10*time.Second, cfg.Spiky/12)); err != nil { // the outage
		return nil, err
	}
	if err := os.Symlink(r.hap.Socket(), link); err != nil {
		return nil, err
	}
	d, err := r.waitState(ctx, "couchdb-2", inMaint, 60*time.Second)
	if err != nil {
		return nil, err
	}
	return []string{benchkit.Ms(d), strconv.Itoa(strings.Count(r.cw.Output(), "haproxy runtime api pass failed"))}, nil
}

func runFlapping(ctx context.Context, cfg config, bin string) ([]string, error) {
	r, err := startRig(ctx, bin, rigOpts{})
	if err != nil {
		return nil, err
	}
	defer r.close()
	from := len(r.cw.Output())
	end := time.Now().Add(min(20*time.Second, cfg.Spiky/6))
	for up := true; time.Now().Before(end); up = !up {
		if up {
			r.node(2).Stop()
		} else if err := r.node(2).Start(); err != nil {
			return nil, err
		}
		if err := benchkit.Sleep(ctx, 300*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if !r.node(2).Running() {
		if err := r.node(2).Start(); err != nil {
			return nil, err
		}
	}
	out := r.cw.Output()[from:]
	verdicts := strings.Count(out, `msg="node verdict changed" node=`+r.node(2).Addr())
	return []string{strconv.Itoa(verdicts), strconv.Itoa(count(r.sent(from), "couchdb-2 state "))}, nil
}

func runHungRequest(ctx context.Context, cfg config, bin string) ([]string, error) {
	r, err := startRig(ctx, bin, rigOpts{haproxy: func(o *haproxytest.Options) {
		o.BackendExtra = append(o.BackendExtra, "use-server couchdb-2 if { req.hdr(x-pin) -m str couchdb-2 }")
	}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	r.node(2).Hang()
	defer r.node(2).Resume()
	done := make(chan time.Time, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.hap.FrontendAddr()+"/medic", nil)
		req.Header.Set("X-Pin", "couchdb-2")
		req.SetBasicAuth(r.cluster.User(), r.cluster.Password())
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- time.Now()
	}()
	if _, err := r.waitState(ctx, "couchdb-2", inMaint, 10*time.Second); err != nil {
		return nil, err
	}
	out := time.Now()
	select {
	case at := <-done:
		return []string{benchkit.Ms(max(0, at.Sub(out)))}, nil
	case <-time.After(15 * time.Second):
		return []string{fmt.Sprintf("still waiting after %s", 15*time.Second)}, nil
	}
}

// runPrefix: couchdb-1 comes back (its server in maint) while nodes 2 and 3 are in
// CouchDB maintenance (nolb), and HAProxy refuses couchdb-1's "ready": a take-out sent
// after the refused ready empties the rotation.
func runPrefix(ctx context.Context, cfg config, bin string) ([]string, error) {
	dir, err := os.MkdirTemp("", "couchwatch-bench-prefix-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "refusing.sock")
	var refused atomic.Int64
	var ln net.Listener
	r, err := startRig(ctx, bin, rigOpts{socket: sock, before: func(r *rig) error {
		if _, err := r.hap.Cmd("set server " + backend + "/couchdb-1 state maint"); err != nil {
			return err
		}
		for i := 2; i <= 3; i++ {
			if err := r.node(i).SetMaintenance("nolb"); err != nil {
				return err
			}
		}
		var err error
		ln, err = r.hap.Refusing(sock, func(_ int, cmd string) bool {
			no := strings.HasSuffix(cmd, "/couchdb-1 state ready")
			if no {
				refused.Add(1)
			}
			return no
		})
		return err
	}})
	if ln != nil {
		defer ln.Close()
	}
	if err != nil {
		return nil, err
	}
	defer r.close()
	if err := benchkit.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, func() (bool, error) { return refused.Load() > 0, nil }); err != nil {
		return nil, fmt.Errorf("couchdb-1's ready never sent: %w", err)
	}
	_, in, err := r.settled(ctx, 2*time.Second) // several passes
	if err != nil {
		return nil, err
	}
	return []string{strconv.Itoa(in)}, nil
}
