// Command couchwatch runs beside CHT's HAProxy: it checks every CouchDB node and steers
// HAProxy's backend through the runtime API (and answers HAProxy agent-checks), exports
// Prometheus metrics, and flags Kubernetes nodes whose CouchDB is saturated.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sethvargo/go-envconfig"
	"k8s.io/utils/clock"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/internal/promreg"
	"github.com/medic/couchwatch/kube"
)

// Set at build time: -ldflags "-X main.version=... -X main.revision=..." (the Dockerfile
// does, from its VERSION and REVISION build arguments). Without -X, revision comes from
// the VCS stamp go build leaves in a binary built inside a git checkout (buildRevision).
var (
	version  = "dev"
	revision = "unknown"
)

// currentRevision is this binary's revision (buildRevision).
func currentRevision() string {
	info, ok := debug.ReadBuildInfo()
	return buildRevision(revision, info, ok)
}

// buildRevision returns the revision couchwatch was built from: set, if -ldflags set it,
// else the vcs.revision of info (with "-dirty" for uncommitted changes), else set.
func buildRevision(set string, info *debug.BuildInfo, ok bool) string {
	if set != "unknown" && set != "" || !ok {
		return set
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return set
	}
	return rev + dirty
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], envconfig.OsLookuper(), os.Stdout, os.Stderr))
}

// run is main without the process: testable, and it returns the exit code.
func run(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	if len(args) > 0 && commands[args[0]] != nil { // status, drain, undrain (cli.go)
		return runCommand(ctx, args, env, stdout, stderr)
	}
	fs := flag.NewFlagSet("couchwatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	checkOnly := fs.Bool("check-config", false, "validate the configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	helpMarkdown := fs.Bool("help-markdown", false, "print docs/config.md (every variable, as Markdown) and exit")
	fs.Usage = func() {} // help is printed below, once, to the right stream
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout)
			return 0
		}
		printHelp(stderr)
		return 2
	}
	if *helpMarkdown {
		fmt.Fprint(stdout, configDoc())
		return 0
	}
	if *showVersion {
		fmt.Fprintf(stdout, "couchwatch %s (%s, %s)\n", version, currentRevision(), runtime.Version())
		return 0
	}
	cfg, err := loadConfig(ctx, env)
	if err != nil {
		fmt.Fprintf(stderr, "couchwatch: invalid configuration:\n%s\n", indent(err.Error()))
		return 2
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "configuration ok")
		return 0
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("couchwatch stopped", "err", err)
		return 1
	}
	return 0
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs couchwatch until ctx ends.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	a, err := newApp(cfg, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer a.close()

	httpLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen COUCHWATCH_LISTEN %s: %w", cfg.Listen, err)
	}
	var agentLn net.Listener
	if cfg.AgentListen != "" && cfg.AgentListen != "off" {
		if agentLn, err = net.Listen("tcp", cfg.AgentListen); err != nil {
			httpLn.Close()
			return fmt.Errorf("listen COUCHWATCH_AGENT_LISTEN %s: %w", cfg.AgentListen, err)
		}
	}
	log.Info("couchwatch starting", "version", version, "config", cfg, "http", httpLn.Addr().String(),
		"runtime_api", cfg.HAProxy.Socket != "", "kube", a.kube != nil)
	return a.run(ctx, httpLn, agentLn)
}

// app holds the running parts.
type app struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	targets []couch.Target
	nodes   []*couch.Node
	runner  *checks.Runner
	clk     clock.WithTicker // the loop's and the probes' time (real outside tests)
	// verdicts is runner as the loop and pass see it (a seam for tests).
	verdicts verdictSource
	explMap  map[string]string
	hosts    *hostCache

	hm   *haproxy.Metrics
	rt   *haproxy.Runtime // nil in agent mode
	rec  reconciler       // nil in agent mode
	kube *kube.Controller // nil when Kubernetes is off

	failOpen        prometheus.Gauge
	failOpenTotal   prometheus.Counter
	budgetExhausted prometheus.Gauge

	timeline *timeline     // decisions, for the status page (status.go)
	history  *history      // load and latency per node, for the status page
	couchm   *couchMetrics // CouchDB's own metrics, nil when off
	shards   *shardWatcher // the n=1 blast radius, nil when off

	mu   sync.Mutex
	last passState
}

// passState is what the last pass decided and saw, for the agent, /readyz and the status page.
type passState struct {
	at         time.Time
	statuses   []checks.Status
	dec        decision
	effective  map[string]haproxy.AdminState // server -> state after the pass (skips respected)
	servers    map[string]string             // node -> server
	unmapped   []string                      // nodes with no HAProxy server
	unwatched  []string                      // HAProxy servers with no node
	observed   *haproxy.Observed
	haproxyErr error
	pstate     policyState
	commands   []haproxy.Command // sent this pass
	skips      []haproxy.Skip    // refused by the safety rules this pass
	outliers   outlierState      // HAProxy's own traffic (outlier.go)
}

func newApp(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*app, error) {
	targets, err := couch.ParseServers(cfg.Servers)
	if err != nil {
		return nil, fmt.Errorf("COUCHDB_SERVERS: %w", err)
	}
	explMap, err := parseServerMap(cfg.ServerMap, targets)
	if err != nil {
		return nil, fmt.Errorf("COUCHWATCH_SERVER_MAP: %w", err)
	}
	a := &app{cfg: cfg, log: log, reg: reg, targets: targets, explMap: explMap}
	a.last.pstate = newPolicyState()
	a.timeline, a.history = newTimeline(timelineSize), newHistory(historySpan, historyStep(cfg.Reconcile))

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_build_info",
		Help: "Build information of couchwatch (always 1)."}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(version, currentRevision(), runtime.Version()).Set(1)
	a.failOpen = prometheus.NewGauge(prometheus.GaugeOpts{Name: "couchwatch_fail_open",
		Help: "1 while every node looks bad and servers are handed back to HAProxy."})
	a.failOpenTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "couchwatch_fail_open_total",
		Help: "Times couchwatch entered fail-open."})
	a.budgetExhausted = prometheus.NewGauge(prometheus.GaugeOpts{Name: "couchwatch_drain_budget_exhausted",
		Help: "1 while a load drain is wanted but the drain budget is used up."})
	if err := promreg.Register(reg, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo, a.failOpen, a.failOpenTotal, a.budgetExhausted); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	// Every runner call carries its own deadline; this is only the fallback.
	opts := couch.Options{User: cfg.User, Password: cfg.Password, Timeout: max(cfg.Checks.Timeout, cfg.Checks.SystemTimeout)}
	for _, t := range targets {
		n, err := couch.NewNode(t, opts)
		if err != nil {
			return nil, fmt.Errorf("couchdb node %s: %w", t.Name, err)
		}
		a.nodes = append(a.nodes, n)
	}
	a.clk = clock.RealClock{}
	a.hosts = newHostCache(targets, net.DefaultResolver.LookupHost)
	cm, err := checks.NewMetrics(reg)
	if err != nil {
		a.close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	a.runner = checks.NewRunner(cfg.Checks, a.nodes, log, cm, a.clk)
	a.verdicts = a.runner
	if cfg.CouchMetrics.On {
		if a.couchm, err = newCouchMetrics(cfg.CouchMetrics, a.nodes, log, reg); err != nil {
			a.close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	if cfg.Shards.Refresh > 0 {
		if a.shards, err = newShardWatcher(cfg.Shards, cfg.Checks.SystemTimeout, a.nodes, a.runner.Snapshot, log, a.timeline, reg); err != nil {
			a.close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}

	if a.hm, err = haproxy.NewMetrics(reg); err != nil {
		a.close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if cfg.HAProxy.Socket != "" {
		a.rt, err = haproxy.NewRuntime(cfg.HAProxy, log)
		if err != nil {
			return nil, fmt.Errorf("haproxy runtime: %w", err)
		}
		a.rec = haproxy.NewReconciler(a.rt, haproxy.Budget{MinReady: cfg.Policy.MinReady}, log, a.hm)
	}

	km, err := kube.NewMetrics(reg)
	if err != nil {
		a.close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	client, on, err := kube.NewClient(cfg.Kube)
	switch {
	case err != nil:
		a.close()
		return nil, fmt.Errorf("kubernetes: %w", err)
	case !on:
		log.Info("kubernetes flagging off", "reason", "not in a cluster and no KUBECONFIG, or COUCHWATCH_KUBE=off")
	default:
		names := make([]string, len(targets))
		for i, t := range targets {
			names[i] = t.Name
		}
		a.kube, err = kube.NewController(cfg.Kube, client, names, a.timeline.tee(log, evKube), km, nil)
		if err != nil {
			// Kubernetes is an extra: HAProxy steering must not depend on it.
			log.Error("kubernetes flagging off: cannot set it up; checks and haproxy steering go on", "err", err)
			a.kube = nil
		}
	}
	return a, nil
}

func (a *app) close() {
	if a.rt != nil {
		_ = a.rt.Close()
	}
	for _, n := range a.nodes {
		n.Close()
	}
}

func (a *app) run(ctx context.Context, httpLn, agentLn net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	start := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	a.hosts.refresh(ctx) // before the first pass maps nodes to servers by address
	httpCap, agentCap := connCaps(nofile(), len(a.nodes), a.cfg.Web.MaxConns, haproxy.AgentMaxConns)
	a.log.Info("connection caps", "http", httpCap, "agent", agentCap, "rlimit_nofile", nofile())
	srv := a.httpServer()
	start(func() error {
		if err := a.serveHTTP(httpLn, srv, httpCap); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if agentLn != nil {
		agent := haproxy.NewAgentServer(a.agentReply, a.log, a.hm)
		agent.MaxConns = agentCap
		start(func() error { return agent.Serve(ctx, agentLn) })
	}
	start(func() error { a.runner.Run(ctx); return nil })
	start(func() error { a.hosts.run(ctx, 30*time.Second); return nil })
	if a.kube != nil {
		// Kubernetes is an extra: if it fails, checks and HAProxy steering go on.
		start(func() error {
			if err := a.kube.Run(ctx); err != nil {
				a.log.Error("kubernetes flagging stopped; checks and haproxy steering go on", "err", err)
			}
			return nil
		})
	}
	start(func() error { a.loop(ctx); return nil })
	if a.couchm != nil {
		start(func() error { a.couchm.run(ctx); return nil })
	}
	if a.shards != nil {
		start(func() error { a.shards.run(ctx); return nil })
	}

	<-ctx.Done()
	shutCtx, c := context.WithTimeout(context.Background(), 5*time.Second)
	defer c()
	_ = srv.Shutdown(shutCtx)
	if agentLn != nil {
		agentLn.Close()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	a.log.Info("couchwatch stopped")
	return nil
}
