package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
	"github.com/medic/couchwatch/internal/testenv"
)

const backend = "couchdb-servers"

// stack is a simulated CouchDB cluster behind a real HAProxy, and couchwatch in process.
type stack struct {
	t       *testing.T
	cluster *couchtest.Cluster
	hap     *haproxytest.Proc
	app     *app
	reg     *prometheus.Registry
	http    string // couchwatch's HTTP address
	agent   string // couchwatch's agent address, "" if off
	logs    *testenv.LogBuffer
	cancel  context.CancelFunc
	done    chan error
}

type stackOpts struct {
	env         map[string]string          // overrides of fastEnv
	haproxy     func(*haproxytest.Options) // changes to HAProxy's configuration
	before      func(*stack)               // runs once HAProxy and the cluster are up, before couchwatch starts
	serverExtra func(i int, agentAddr string) string
	runtime     bool // COUCHWATCH_HAPROXY_SOCKET set
	agent       bool
	names       []string                 // HAProxy server names; default couchdb-1..3
	mapByName   bool                     // set COUCHWATCH_SERVER_MAP node address -> server name
	setup       func(*couchtest.Cluster) // before couchwatch starts
	netTick     time.Duration            // the cluster's net_ticktime; 0 = 1s
}

// fastEnv is couchwatch tuned for tests: every interval short.
func fastEnv() map[string]string {
	return map[string]string{
		"COUCHWATCH_PROBE_INTERVAL":      "50ms",
		"COUCHWATCH_PROBE_TIMEOUT":       "1s",    // deadlines a busy CI machine keeps:
		"COUCHWATCH_PROBE_TIMEOUT_MIN":   "250ms", // a stall is not a hang
		"COUCHWATCH_PROBE_FAST_INTERVAL": "20ms",
		"COUCHWATCH_RISE":                "2",
		"COUCHWATCH_FALL":                "2",
		"COUCHWATCH_RECONCILE_INTERVAL":  "100ms",
		"COUCHWATCH_SYSTEM_INTERVAL":     "100ms",
		"COUCHWATCH_SYSTEM_TIMEOUT":      "1s",
		"COUCHWATCH_MEMBERSHIP_INTERVAL": "200ms",
		"COUCHWATCH_LOAD_SUSTAIN":        "300ms",
		"COUCHWATCH_LOAD_COOLDOWN":       "300ms",
		"COUCHWATCH_LOAD_WINDOW":         "1s",
		"COUCHWATCH_SLOWSTART":           "0s",
		"COUCHWATCH_KUBE":                "off",
		"COUCHWATCH_LOG_FORMAT":          "text",
		"COUCHWATCH_LOG_LEVEL":           "debug",
	}
}

func newStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	s := &stack{t: t, logs: &testenv.LogBuffer{}, done: make(chan error, 1)}
	// Not the simulator's default password: "password" is part of CouchDB's own metric
	// names (couchdb_password_hasher_*), and the leak checks look for the password.
	tick := o.netTick
	if tick == 0 {
		tick = time.Second
	}
	s.cluster = couchtest.NewClusterT(t, 3, couchtest.Options{NetTickTime: tick, User: "medic", Password: "pw-7f3a9c"})
	if o.setup != nil {
		o.setup(s.cluster)
	}
	names := o.names
	if names == nil {
		names = []string{"couchdb-1", "couchdb-2", "couchdb-3"}
	}
	var agentLn net.Listener
	if o.agent {
		var err error
		if agentLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		s.agent = agentLn.Addr().String()
	}
	var specs []haproxytest.ServerSpec
	var servers []string
	for i, n := range s.cluster.Nodes() {
		extra := ""
		if o.serverExtra != nil {
			extra = o.serverExtra(i, s.agent)
		}
		specs = append(specs, haproxytest.ServerSpec{Name: names[i], Addr: n.Addr(), Extra: extra})
		servers = append(servers, n.Addr())
	}
	hopt := haproxytest.Options{Servers: specs}
	if o.haproxy != nil {
		o.haproxy(&hopt)
	}
	s.hap = haproxytest.StartT(t, hopt)
	if o.before != nil {
		o.before(s)
	}

	env := fastEnv()
	env["COUCHDB_SERVERS"] = strings.Join(servers, ",")
	env["COUCHDB_USER"], env["COUCHDB_PASSWORD"] = s.cluster.User(), s.cluster.Password()
	if o.runtime {
		env["COUCHWATCH_HAPROXY_SOCKET"] = s.hap.Socket()
	}
	if o.mapByName {
		var m []string
		for i, n := range s.cluster.Nodes() {
			m = append(m, n.Addr()+"="+names[i])
		}
		env["COUCHWATCH_SERVER_MAP"] = strings.Join(m, ",")
	}
	for k, v := range o.env {
		env[k] = v
	}
	cfg, err := loadConfig(context.Background(), envOf(flatten(env)...))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.reg = prometheus.NewRegistry()
	s.app, err = newApp(cfg, log, s.reg)
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.http = httpLn.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- s.app.run(ctx, httpLn, agentLn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("couchwatch run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("couchwatch did not stop within 10s")
		}
		s.app.close()
		if t.Failed() {
			t.Logf("couchwatch log:\n%s", tail(s.logs.String(), 12000))
		}
	})
	return s
}

func flatten(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, v)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (s *stack) node(i int) *couchtest.Node { return s.cluster.Nodes()[i-1] }

// wait polls what HAProxy itself reports until cond holds for server.
func (s *stack) wait(server string, what string, cond func(haproxytest.Server) bool) haproxytest.Server {
	s.t.Helper()
	srv, err := s.hap.PollServer(context.Background(), backend, server, cond, haproxytest.MinWait)
	if err != nil {
		s.t.Fatalf("%s never %s: %v", server, what, err)
	}
	return srv
}

func (s *stack) waitAll(what string, cond func(haproxytest.Server) bool) {
	s.t.Helper()
	for _, n := range []string{"couchdb-1", "couchdb-2", "couchdb-3"} {
		s.wait(n, what, cond)
	}
}

func (s *stack) get(path string) (int, string) {
	s.t.Helper()
	resp, err := http.Get("http://" + s.http + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *stack) waitHTTP(path string, code int) {
	s.t.Helper()
	deadline := time.Now().Add(haproxytest.MinWait)
	for {
		got, body := s.get(path)
		if got == code {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("GET %s = %d %q, want %d", path, got, body, code)
		}
		time.Sleep(20 * time.Millisecond) // polling an external process's state: no event to wait on
	}
}

// waitBody polls path until it answers code with a body containing want.
func (s *stack) waitBody(path string, code int, want string) {
	s.t.Helper()
	deadline := time.Now().Add(haproxytest.MinWait)
	for {
		got, body := s.get(path)
		if got == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("GET %s = %d %q, want %d with %q", path, got, body, code, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) metric(name string, labels ...string) float64 {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
	}
	s.t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func ready(s haproxytest.Server) bool { return s.AdminBits == 0 }
func maint(s haproxytest.Server) bool { return s.AdminBits&0x01 != 0 }
func drain(s haproxytest.Server) bool { return s.AdminBits&0x08 != 0 && s.AdminBits&0x01 == 0 }

// The core scenarios, each asserted on what HAProxy itself reports.
func TestRuntimeSteering(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true})
	s.waitHTTP("/readyz", http.StatusOK)
	s.waitAll("ready", ready)

	t.Run("stopped node goes to maint and comes back", func(t *testing.T) {
		s.node(2).Stop()
		s.wait("couchdb-2", "maint", maint)
		if err := s.node(2).Start(); err != nil {
			t.Fatal(err)
		}
		s.wait("couchdb-2", "ready", ready)
	})
	t.Run("hung node goes to maint within the probe timeout", func(t *testing.T) {
		start := time.Now()
		s.node(3).Hang()
		s.wait("couchdb-3", "maint", maint)
		// fall=2 probes of 150 ms, 20 ms apart, plus one pass: well under a second on a
		// quiet machine. Without probe deadlines the hung probes never return; the bound
		// only tells the two apart and leaves a busy CI machine room (bench/failover measures).
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("hung node taken out after %s", d)
		}
		s.node(3).Resume()
		s.wait("couchdb-3", "ready", ready)
	})
	t.Run("5xx node goes to maint", func(t *testing.T) {
		s.node(1).SetFault(couchtest.Fault5xx)
		s.wait("couchdb-1", "maint", maint)
		s.node(1).SetFault(couchtest.FaultNone)
		s.wait("couchdb-1", "ready", ready)
	})
	for _, mode := range []string{"nolb", "true"} {
		t.Run("maintenance "+mode+" drains then maint", func(t *testing.T) {
			if err := s.node(1).SetMaintenance(mode); err != nil {
				t.Fatal(err)
			}
			// Drain is set at once; with no connections left it becomes maint.
			s.wait("couchdb-1", "maint after drain", maint)
			if got := s.metric("couchwatch_haproxy_drains_total", "server", "couchdb-1", "reason", "maintenance"); got < 1 {
				t.Errorf("drains_total{maintenance} = %v", got)
			}
			if err := s.node(1).SetMaintenance(""); err != nil {
				t.Fatal(err)
			}
			s.wait("couchdb-1", "ready", ready)
		})
	}
	t.Run("haproxy reload is repaired within a pass", func(t *testing.T) {
		s.node(2).Stop()
		s.wait("couchdb-2", "maint", maint)
		if err := s.hap.Reload(); err != nil {
			t.Fatal(err)
		}
		// The reload put couchdb-2 back to ready; couchwatch re-reads and repairs it.
		s.wait("couchdb-2", "maint again after reload", maint)
		if err := s.node(2).Start(); err != nil {
			t.Fatal(err)
		}
		s.wait("couchdb-2", "ready", ready)
	})
	t.Run("every node down: fail open", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			s.node(i).Stop()
		}
		// couchwatch hands every server back to HAProxy, loudly.
		deadline := time.Now().Add(10 * time.Second)
		for s.metric("couchwatch_fail_open") != 1 {
			if time.Now().After(deadline) {
				t.Fatal("couchwatch_fail_open never 1")
			}
			time.Sleep(20 * time.Millisecond) // metric of another goroutine: poll
		}
		s.waitAll("ready (fail open)", ready)
		if !strings.Contains(s.logs.String(), "fail open") {
			t.Error("fail open not logged")
		}
		for i := 1; i <= 3; i++ {
			if err := s.node(i).Start(); err != nil {
				t.Fatal(err)
			}
		}
		s.waitAll("ready", ready)
		for s.metric("couchwatch_fail_open") != 0 {
			if time.Now().After(deadline) {
				t.Fatal("couchwatch_fail_open stuck at 1")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("never the last ready server", func(t *testing.T) {
		s.node(1).Stop()
		s.node(2).Stop()
		s.wait("couchdb-1", "maint", maint)
		s.wait("couchdb-2", "maint", maint)
		if err := s.node(3).SetMaintenance("nolb"); err != nil {
			t.Fatal(err)
		}
		// couchdb-3 is the last one ready: it wants to drain but must stay ready.
		deadline := time.Now().Add(10 * time.Second)
		for s.metric("couchwatch_haproxy_skipped_total", "reason", "last_ready") < 1 {
			if time.Now().After(deadline) {
				t.Fatal("no last_ready skip counted")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if srv := s.wait("couchdb-3", "ready", ready); srv.AdminBits != 0 {
			t.Fatalf("last server taken out: %+v", srv)
		}
		_ = s.node(3).SetMaintenance("")
		for i := 1; i <= 2; i++ {
			if err := s.node(i).Start(); err != nil {
				t.Fatal(err)
			}
		}
		s.waitAll("ready", ready)
	})
	t.Run("status and metrics", func(t *testing.T) {
		code, body := s.get("/status.json")
		if code != 200 || !strings.Contains(body, `"mode": "runtime"`) || !strings.Contains(body, `"server": "couchdb-2"`) ||
			!strings.Contains(body, `"last_up_status": "ok"`) {
			t.Fatalf("status.json = %d %s", code, body)
		}
		code, body = s.get("/metrics")
		if code != 200 {
			t.Fatalf("/metrics = %d", code)
		}
		for _, m := range []string{"couchwatch_build_info", "couchwatch_node_verdict", "couchwatch_probe_duration_seconds_bucket",
			"couchwatch_haproxy_commands_total", "couchwatch_haproxy_last_reconcile_success_timestamp_seconds"} {
			if !strings.Contains(body, m) {
				t.Errorf("/metrics lacks %s", m)
			}
		}
		if strings.Contains(body, s.cluster.Password()) {
			t.Error("/metrics leaks the password")
		}
		promtoolCheckMetrics(t, body)
		if got := s.metric("couchwatch_haproxy_commands_total", "op", "state", "result", "ok"); got < 4 {
			t.Errorf("state commands ok = %v", got)
		}
	})
	if strings.Contains(s.logs.String(), s.cluster.Password()) {
		t.Error("the log holds the CouchDB password")
	}
}

// A broken or missing admin socket makes /readyz fail; couchwatch keeps running and
// recovers once HAProxy answers.
func TestRuntimeSocketMissingThenBackendWrong(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_HAPROXY_BACKEND": "no-such-backend"}})
	s.waitHTTP("/healthz", http.StatusOK)
	s.waitBody("/readyz", http.StatusServiceUnavailable, "no-such-backend")
	if got := s.metric("couchwatch_haproxy_up"); got != 0 {
		t.Errorf("couchwatch_haproxy_up = %v, want 0", got)
	}
	// Nothing was touched on the real backend.
	s.node(2).Stop()
	time.Sleep(500 * time.Millisecond) // assert an absence: nothing may happen during this window
	srv, err := s.hap.Servers(backend)
	if err != nil {
		t.Fatal(err)
	}
	if srv["couchdb-2"].AdminBits != 0 {
		t.Fatalf("couchwatch changed a backend it was not given: %+v", srv["couchdb-2"])
	}
}

func TestRuntimeSocketAbsentRecovers(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_HAPROXY_SOCKET": "/nonexistent/admin.sock"}})
	s.waitBody("/readyz", http.StatusServiceUnavailable, "admin.sock")
	s.waitHTTP("/healthz", http.StatusOK)
	if !strings.Contains(s.logs.String(), "haproxy runtime api pass failed") {
		t.Error("socket failure not logged")
	}
}

// Dry run: the plan is logged, HAProxy is left alone.
func TestRuntimeDryRun(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_DRY_RUN": "true"}})
	s.waitHTTP("/readyz", http.StatusOK)
	s.node(2).Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.logs.String(), "dry run") {
		if time.Now().After(deadline) {
			t.Fatal("dry-run plan never logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv, err := s.hap.Servers(backend)
	if err != nil {
		t.Fatal(err)
	}
	if srv["couchdb-2"].AdminBits != 0 {
		t.Fatalf("dry run changed HAProxy: %+v", srv["couchdb-2"])
	}
}

// Agent mode with HAProxy's real agent-checks and CHT's config (no agent-send): one answer
// for the whole cluster. serve keeps every server up when one node dies.
func TestAgentClusterWide(t *testing.T) {
	extra := func(_ int, agent string) string {
		h, p, _ := net.SplitHostPort(agent)
		return fmt.Sprintf("check inter 500ms agent-check agent-addr %s agent-port %s agent-inter 100ms", h, p)
	}
	for _, policy := range []string{"serve", "fail"} {
		t.Run(policy, func(t *testing.T) {
			s := newStack(t, stackOpts{agent: true, serverExtra: extra, env: map[string]string{"COUCHWATCH_ON_NODE_LOSS": policy}})
			s.waitAll("up", func(x haproxytest.Server) bool { return strings.HasPrefix(x.Status, "UP") })
			s.node(2).Stop()
			if policy == "serve" {
				// Wait until couchwatch has seen node 2 down (HAProxy's own check may mark
				// couchdb-2 down too), then check the healthy servers stay up.
				deadline := time.Now().Add(10 * time.Second)
				for s.metric("couchwatch_node_verdict", "node", s.node(2).Addr(), "verdict", "down") != 1 {
					if time.Now().After(deadline) {
						t.Fatal("node 2 never down")
					}
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(500 * time.Millisecond) // several agent-inter periods: nothing healthy may go down
				all, _ := s.hap.Servers(backend)
				for _, n := range []string{"couchdb-1", "couchdb-3"} {
					if x := all[n]; !strings.HasPrefix(x.Status, "UP") {
						t.Errorf("%s = %s, want UP (serve keeps healthy coordinators)", n, x.Status)
					}
				}
			} else {
				s.waitAll("down (fail: all or nothing)", func(x haproxytest.Server) bool { return strings.Contains(x.Status, "DOWN") })
				if x := s.wait("couchdb-1", "read", func(haproxytest.Server) bool { return true }); !strings.Contains(x.Status, "agent") {
					t.Errorf("couchdb-1 = %q, want DOWN (agent)", x.Status)
				}
			}
			if err := s.node(2).Start(); err != nil {
				t.Fatal(err)
			}
			s.waitAll("up", func(x haproxytest.Server) bool { return strings.HasPrefix(x.Status, "UP") })
		})
	}
}

// Agent mode per server: agent-send names the server; only the dead node goes down, a
// node in maintenance drains.
func TestAgentPerServer(t *testing.T) {
	names := []string{"couchdb-1", "couchdb-2", "couchdb-3"}
	s := newStack(t, stackOpts{agent: true, mapByName: true, serverExtra: func(i int, agent string) string {
		h, p, _ := net.SplitHostPort(agent)
		return fmt.Sprintf(`check inter 500ms agent-check agent-addr %s agent-port %s agent-inter 100ms agent-send "%s\n"`, h, p, names[i])
	}})
	up := func(x haproxytest.Server) bool { return x.Status == "UP" }
	s.waitAll("up", up)
	// A node answering 500: HAProxy's own TCP check passes, only the agent knows.
	s.node(2).SetFault(couchtest.Fault5xx)
	s.wait("couchdb-2", "down (agent)", func(x haproxytest.Server) bool { return x.Status == "DOWN (agent)" })
	for _, n := range []string{"couchdb-1", "couchdb-3"} {
		// "UP 1/3" is HAProxy's own TCP check missing once on a busy machine: still up.
		if x := s.wait(n, "read", func(haproxytest.Server) bool { return true }); !strings.HasPrefix(x.Status, "UP") {
			t.Errorf("%s = %s, want UP", n, x.Status)
		}
	}
	s.node(2).SetFault(couchtest.FaultNone)
	s.wait("couchdb-2", "up", up)
	if err := s.node(2).SetMaintenance("nolb"); err != nil {
		t.Fatal(err)
	}
	s.wait("couchdb-2", "drain (agent)", func(x haproxytest.Server) bool { return strings.Contains(x.Status, "DRAIN") })
	if err := s.node(2).SetMaintenance(""); err != nil {
		t.Fatal(err)
	}
	s.wait("couchdb-2", "up", up)
}

// Weights follow the load score and show in HAProxy's show stat; two saturated nodes
// but only one drained (budget); a planned nolb drain loses no request.
func TestLoadSteering(t *testing.T) {
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_WEIGHT_STEP": "100"}})
	s.waitHTTP("/readyz", http.StatusOK)
	s.waitAll("weight 100", func(x haproxytest.Server) bool { return x.Weight == 100 })

	t.Run("one saturated node: drained within budget", func(t *testing.T) {
		s.node(2).SetLoad(1)
		s.wait("couchdb-2", "drained for load", drain)
		if got := s.metric("couchwatch_node_load_score", "node", s.node(2).Addr()); got < 0.8 {
			t.Errorf("load score %v", got)
		}
	})
	t.Run("two saturated nodes: only one drained, the other at minimum weight", func(t *testing.T) {
		s.node(3).SetLoad(1)
		s.wait("couchdb-3", "minimum weight", func(x haproxytest.Server) bool { return x.Weight == 10 })
		deadline := time.Now().Add(5 * time.Second)
		for s.metric("couchwatch_drain_budget_exhausted") != 1 {
			if time.Now().After(deadline) {
				t.Fatal("budget exhaustion not reported")
			}
			time.Sleep(20 * time.Millisecond)
		}
		all, _ := s.hap.Servers(backend)
		drained := 0
		for _, x := range all {
			if x.AdminBits != 0 {
				drained++
			}
		}
		if drained != 1 {
			t.Fatalf("%d servers out of rotation, want exactly 1: %+v", drained, all)
		}
	})
	t.Run("cooled nodes come back at full weight", func(t *testing.T) {
		s.node(2).SetLoad(0)
		s.node(3).SetLoad(0)
		s.waitAll("ready at weight 100", func(x haproxytest.Server) bool { return x.AdminBits == 0 && x.Weight == 100 })
	})
	t.Run("nolb drain loses no request", func(t *testing.T) {
		var ok, failed atomic.Int64
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 10 * time.Second}
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 2000 && ctx.Err() == nil; i++ {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.hap.FrontendAddr()+"/medic", nil)
					req.SetBasicAuth(s.cluster.User(), s.cluster.Password())
					resp, err := client.Do(req)
					if err != nil {
						if ctx.Err() == nil {
							failed.Add(1)
						}
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
			}()
		}
		if err := s.node(1).SetMaintenance("nolb"); err != nil {
			t.Fatal(err)
		}
		s.wait("couchdb-1", "maint after drain", maint)
		_ = s.node(1).SetMaintenance("")
		s.wait("couchdb-1", "ready", ready)
		// On a busy machine the drain can end before many requests went through: keep
		// the load on (within the context's deadline) until there are enough to judge.
		for ok.Load()+failed.Load() < 50 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if failed.Load() != 0 || ok.Load() < 50 {
			t.Fatalf("during a planned drain: %d ok, %d failed", ok.Load(), failed.Load())
		}
		t.Logf("planned nolb drain: %d requests, 0 failed", ok.Load())
	})
}

// Kubernetes is an extra: when flagging cannot be set up (here: COUCHDB_SERVERS hosts
// that name no Service), couchwatch says so and steers HAProxy all the same.
func TestKubeSetupErrorDoesNotStopSteering(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOpts{runtime: true, env: map[string]string{"COUCHWATCH_KUBE": "on", "KUBECONFIG": kubeconfig}})
	s.waitHTTP("/readyz", http.StatusOK)
	if !strings.Contains(s.logs.String(), "kubernetes flagging off") {
		t.Errorf("the kube set-up error was not logged")
	}
	s.node(2).Stop()
	s.wait("couchdb-2", "maint", maint)
}

// ownMetrics drops the couchdb_* families: CouchDB's own metrics are re-exported under
// CouchDB's names (dashboards use them), some of which promtool's lint dislikes
// (couchdb_httpd_status_codes is a counter without _total).
func ownMetrics(scrape string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(scrape, "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE "))
		if len(f) > 0 && strings.HasPrefix(f[0], "couchdb_") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// promtoolCheckMetrics lints a scrape with Debian's promtool (naming, units, help).
// Without promtool the test fails in CI and is skipped elsewhere (testenv.Require).
func promtoolCheckMetrics(t *testing.T, scrape string) {
	t.Helper()
	pt := testenv.Require(t, "promtool")
	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = strings.NewReader(ownMetrics(scrape))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
