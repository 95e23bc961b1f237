// Command load measures request latency through a real HAProxy when one of three
// simulated CouchDB nodes is saturated, for couchwatch's load steering against plain
// leastconn and roundrobin, in one run at the same offered load:
//
//	go run ./bench/load [-rate 200] [-duration 20s] [-warmup 5s] ...
//
// Every node answers data requests after -base; the saturated node adds -per-inflight
// for every data request it is already serving (its latency grows with its queue) and
// its /_node/_local/_system shows load (run_queue 28, busy queues). An open-loop
// generator offers -rate requests per second; latency is measured from each request's
// due time. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

type config struct {
	Rate        float64
	Warmup      time.Duration // load before measuring
	MaxWarmup   time.Duration // couchwatch must have reacted within this
	Duration    time.Duration // measured window
	Base        time.Duration
	PerInflight time.Duration
	Loaded      int // 1-based
	Timeout     time.Duration
	// Couchwatch tuning (shortened so it reacts within the warm-up).
	SystemInterval, Sustain time.Duration
	Methods                 []string
	// Rounds: the methods run in turn, round after round, so slow phases of a shared
	// machine hit every method alike; the table shows medians over rounds.
	Rounds int
}

func defaultConfig() config {
	return config{
		Rate: 200, Warmup: 5 * time.Second, MaxWarmup: 30 * time.Second, Duration: 20 * time.Second,
		Base: 5 * time.Millisecond, PerInflight: 20 * time.Millisecond, Loaded: 3, Timeout: 30 * time.Second,
		SystemInterval: 500 * time.Millisecond, Sustain: 2 * time.Second,
		Methods: []string{methodCouchwatch, methodLeastconn, methodRoundrobin}, Rounds: 3,
	}
}

const (
	nodes            = 3
	methodCouchwatch = "couchwatch"
	methodLeastconn  = "leastconn"
	methodRoundrobin = "roundrobin"
)

func (c config) validate() error {
	var errs []error
	if c.Rate <= 0 || c.Rate > 2000 {
		errs = append(errs, fmt.Errorf("-rate must be in (0, 2000], got %v", c.Rate))
	}
	if c.Duration <= 0 || c.Duration > 10*time.Minute || c.Warmup < 0 || c.MaxWarmup < c.Warmup || c.MaxWarmup > 10*time.Minute {
		errs = append(errs, errors.New("need 0 < -duration <= 10m and -warmup <= -max-warmup <= 10m"))
	}
	if c.Base < 0 || c.PerInflight < 0 || c.Timeout <= 0 || c.SystemInterval <= 0 || c.Sustain < 0 {
		errs = append(errs, errors.New("latencies and intervals must not be negative"))
	}
	if c.Loaded < 1 || c.Loaded > nodes {
		errs = append(errs, fmt.Errorf("-loaded must be 1..%d", nodes))
	}
	if c.Rounds < 1 || c.Rounds > 20 {
		errs = append(errs, fmt.Errorf("-rounds must be 1..20, got %d", c.Rounds))
	}
	if len(c.Methods) == 0 {
		errs = append(errs, errors.New("-methods: at least one"))
	}
	for _, m := range c.Methods {
		if m != methodCouchwatch && m != methodLeastconn && m != methodRoundrobin {
			errs = append(errs, fmt.Errorf("unknown method %q", m))
		}
	}
	return errors.Join(errs...)
}

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "offered requests per second (open loop)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "load before the measured window")
	fs.DurationVar(&cfg.MaxWarmup, "max-warmup", cfg.MaxWarmup, "longest warm-up while waiting for couchwatch to react")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured window")
	fs.DurationVar(&cfg.Base, "base", cfg.Base, "latency of every reply on every node")
	fs.DurationVar(&cfg.PerInflight, "per-inflight", cfg.PerInflight, "extra latency per data request in flight on the saturated node")
	fs.IntVar(&cfg.Loaded, "loaded", cfg.Loaded, "which node (1-based) is saturated")
	fs.DurationVar(&cfg.SystemInterval, "system-interval", cfg.SystemInterval, "COUCHWATCH_SYSTEM_INTERVAL for the run")
	fs.DurationVar(&cfg.Sustain, "sustain", cfg.Sustain, "COUCHWATCH_LOAD_SUSTAIN for the run")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds of every method in turn (medians are shown)")
	methods := fs.String("methods", strings.Join(cfg.Methods, ","), "methods to run: couchwatch,leastconn,roundrobin")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Methods = benchkit.SplitList(*methods)
	return benchkit.Run("load", cfg.validate, func(ctx context.Context) error {
		_, err := run(ctx, cfg, os.Stdout, os.Stderr)
		return err
	})
}

// row is one method's measurement.
type row struct {
	Method                 string
	P50, P90, P99, Max     time.Duration
	OK, Errors             int
	Throughput             float64 // 200s per second of the window
	LoadedShare            float64 // fraction of 200s answered by the saturated node
	Reacted                time.Duration
	LoadedState, Detail    string
	Measured               time.Duration
	Offered                int
	RoundP99               []time.Duration
	reactedOK, hadReaction bool
}

func run(ctx context.Context, cfg config, out, progress io.Writer) ([]row, error) {
	dir, err := os.MkdirTemp("", "couchwatch-bench-load-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := ""
	for _, m := range cfg.Methods {
		if m == methodCouchwatch {
			if bin, err = benchkit.BuildCouchwatch(ctx, dir); err != nil {
				return nil, err
			}
		}
	}
	cluster, err := couchtest.Start(nodes, couchtest.Options{})
	if err != nil {
		return nil, err
	}
	defer cluster.Close()
	for i, n := range cluster.Nodes() {
		n.SetLatency(cfg.Base)
		if i == cfg.Loaded-1 {
			n.SetLatencyPerInflight(cfg.PerInflight)
			n.SetLoad(1)
		}
	}
	started := time.Now()
	byMethod := map[string][]row{}
	for round := range cfg.Rounds {
		for _, m := range cfg.Methods {
			r, err := runMethod(ctx, cfg, cluster, bin, m)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", m, round+1, err)
			}
			fmt.Fprintf(progress, "round %d %-10s p50 %s p99 %s, %.1f ok/s, %d errors, %.1f%% on the saturated node %s\n",
				round+1, m, benchkit.Ms(r.P50), benchkit.Ms(r.P99), r.Throughput, r.Errors, 100*r.LoadedShare, r.Detail)
			byMethod[m] = append(byMethod[m], r)
		}
	}
	var rows []row
	for _, m := range cfg.Methods {
		rows = append(rows, medianRow(byMethod[m]))
	}
	write(out, cfg, started, rows)
	return rows, nil
}

// medianRow folds the rounds of one method: medians of latencies, throughput and share,
// errors and answers summed, and every round's p99 kept.
func medianRow(rs []row) row {
	out := rs[len(rs)-1]
	pick := func(f func(row) time.Duration) time.Duration {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, f(r))
		}
		return benchkit.Median(ds)
	}
	out.P50 = pick(func(r row) time.Duration { return r.P50 })
	out.P90 = pick(func(r row) time.Duration { return r.P90 })
	out.P99 = pick(func(r row) time.Duration { return r.P99 })
	out.Max = pick(func(r row) time.Duration { return r.Max })
	out.Reacted = pick(func(r row) time.Duration { return r.Reacted })
	out.Throughput = float64(pick(func(r row) time.Duration { return time.Duration(r.Throughput * 1000) })) / 1000
	out.LoadedShare = float64(pick(func(r row) time.Duration { return time.Duration(r.LoadedShare * 1e6) })) / 1e6
	out.OK, out.Errors, out.reactedOK = 0, 0, true
	out.RoundP99 = nil
	for _, r := range rs {
		out.OK += r.OK
		out.Errors += r.Errors
		out.reactedOK = out.reactedOK && (r.reactedOK || !r.hadReaction)
		out.RoundP99 = append(out.RoundP99, r.P99)
	}
	return out
}

func serverName(i int) string { return fmt.Sprintf("couchdb%d", i+1) }

func runMethod(ctx context.Context, cfg config, cluster *couchtest.Cluster, bin, m string) (row, error) {
	r := row{Method: m}
	balance := "leastconn"
	if m == methodRoundrobin {
		balance = "roundrobin"
	}
	var specs []haproxytest.ServerSpec
	for i, n := range cluster.Nodes() {
		specs = append(specs, haproxytest.ServerSpec{Name: serverName(i), Addr: n.Addr()})
	}
	hap, err := haproxytest.Start(haproxytest.Options{Servers: specs, Balance: balance,
		Timeouts: []string{"connect 5s", "client 60s", "server 60s"}})
	if err != nil {
		return r, err
	}
	defer hap.Close()
	loaded := serverName(cfg.Loaded - 1)
	if m == methodCouchwatch {
		cw, err := benchkit.StartCouchwatch(ctx, bin, benchkit.CouchwatchEnv{
			Servers: cluster.Targets(), User: cluster.User(), Password: cluster.Password(), Socket: hap.Socket(),
			Tuning: map[string]string{
				"COUCHWATCH_SYSTEM_INTERVAL": cfg.SystemInterval.String(),
				"COUCHWATCH_LOAD_SUSTAIN":    cfg.Sustain.String(),
			},
		}, 20*time.Second)
		if err != nil {
			return r, err
		}
		defer cw.Stop()
	}

	start := time.Now()
	stop := make(chan struct{})
	resc := make(chan []benchkit.Result, 1)
	lc := benchkit.LoadConfig{
		URL: "http://" + hap.FrontendAddr() + "/medic", Rate: cfg.Rate,
		Max:     int(cfg.Rate*(cfg.MaxWarmup+cfg.Duration).Seconds()) + 1,
		Timeout: cfg.Timeout, User: cluster.User(), Password: cluster.Password(),
	}
	go func() { resc <- benchkit.RunLoad(ctx, lc, stop) }()
	stopped := false
	stopLoad := func() []benchkit.Result {
		if !stopped {
			close(stop)
			stopped = true
		}
		return <-resc
	}

	measureFrom := start.Add(cfg.Warmup)
	if m == methodCouchwatch {
		// Warm up until couchwatch has steered the saturated server (lower weight than
		// its peers, or drained), at most MaxWarmup.
		r.hadReaction = true
		err := benchkit.WaitFor(ctx, cfg.MaxWarmup, 20*time.Millisecond, func() (bool, error) {
			st, err := benchkit.ReadStates(hap.Socket(), hap.Backend())
			if err != nil {
				return false, nil
			}
			l := st[loaded]
			other := st[serverName(cfg.Loaded%nodes)]
			return !l.InRotation() || l.UWeight < other.UWeight, nil
		})
		r.Reacted = time.Since(start)
		r.reactedOK = err == nil
		if !r.reactedOK {
			stopLoad()
			return r, fmt.Errorf("couchwatch did not steer %s away within %s", loaded, cfg.MaxWarmup)
		}
		if t := time.Now(); t.After(measureFrom) {
			measureFrom = t
		}
	}
	if err := benchkit.Sleep(ctx, time.Until(measureFrom.Add(cfg.Duration))); err != nil {
		stopLoad()
		return r, err
	}
	results := stopLoad()
	if st, err := benchkit.ReadStates(hap.Socket(), hap.Backend()); err == nil {
		l := st[loaded]
		state := "ready"
		switch {
		case l.Admin&1 != 0:
			state = "maint"
		case l.Admin&8 != 0:
			state = "drain"
		}
		r.LoadedState = fmt.Sprintf("%s weight %d (peers %d)", state, l.UWeight, st[serverName(cfg.Loaded%nodes)].UWeight)
	}
	if r.hadReaction {
		r.Detail = fmt.Sprintf("(steered after %s; %s at the end: %s)", r.Reacted.Round(100*time.Millisecond), loaded, r.LoadedState)
	}
	var lat []time.Duration
	onLoaded := 0
	end := measureFrom.Add(cfg.Duration)
	for _, res := range results {
		if res.Due.Before(measureFrom) || !res.Due.Before(end) {
			continue
		}
		r.Offered++
		if !res.OK() {
			r.Errors++
			continue
		}
		r.OK++
		lat = append(lat, res.Latency)
		if res.Node == cluster.Nodes()[cfg.Loaded-1].ErlangName() {
			onLoaded++
		}
	}
	if r.OK == 0 {
		return r, fmt.Errorf("no successful request in the measured window (%d errors)", r.Errors)
	}
	r.Measured = cfg.Duration
	r.P50, r.P90, r.P99 = benchkit.Percentile(lat, 50), benchkit.Percentile(lat, 90), benchkit.Percentile(lat, 99)
	r.Max = benchkit.Percentile(lat, 100)
	r.Throughput = float64(r.OK) / cfg.Duration.Seconds()
	r.LoadedShare = float64(onLoaded) / float64(r.OK)
	return r, nil
}

func rounds(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, strings.TrimSuffix(benchkit.Ms(d), " ms"))
	}
	return strings.Join(parts, ", ")
}

func write(w io.Writer, cfg config, started time.Time, rows []row) {
	fmt.Fprintf(w, "# load: %s, %s/%s, %d CPUs, HAProxy 2.6\n", started.UTC().Format("2006-01-02 15:04 MST"),
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(w, "\n%d nodes, every reply +%s; node %d saturated: +%s per data request in flight and _system load 1 (run_queue 28).\n",
		nodes, cfg.Base, cfg.Loaded, cfg.PerInflight)
	fmt.Fprintf(w, "%.0f req/s offered open loop, measured over %s after a %s warm-up (couchwatch: and after it steered); %d rounds of\n",
		cfg.Rate, cfg.Duration, cfg.Warmup, cfg.Rounds)
	fmt.Fprintf(w, "every method in turn, medians over rounds (errors summed; p99 of each round in ms in the last column);\n")
	fmt.Fprintf(w, "latency from each request's due time. couchwatch: runtime API, COUCHWATCH_SYSTEM_INTERVAL=%s COUCHWATCH_LOAD_SUSTAIN=%s, rest default.\n",
		cfg.SystemInterval, cfg.Sustain)
	var lc *row
	for i := range rows {
		if rows[i].Method == methodLeastconn {
			lc = &rows[i]
		}
	}
	t := benchkit.Table{Header: []string{"method", "p50", "p90", "p99", "max", "ok/s", "errors", "on saturated node", "p99 vs leastconn", "p50 vs leastconn", "p99 per round"}}
	for _, r := range rows {
		p99r, p50r := "-", "-"
		if lc != nil {
			p99r = benchkit.Ratio(float64(r.P99), float64(lc.P99))
			p50r = benchkit.Ratio(float64(r.P50), float64(lc.P50))
		}
		name := "balance " + r.Method
		if r.Method == methodCouchwatch {
			name = "couchwatch (leastconn + runtime steering)"
		}
		t.Add(name, benchkit.Ms(r.P50), benchkit.Ms(r.P90), benchkit.Ms(r.P99), benchkit.Ms(r.Max),
			fmt.Sprintf("%.1f", r.Throughput), fmt.Sprint(r.Errors), fmt.Sprintf("%.1f %%", 100*r.LoadedShare), p99r, p50r, rounds(r.RoundP99))
	}
	t.Write(w)
	for _, r := range rows {
		if r.hadReaction {
			fmt.Fprintf(w, "\ncouchwatch steered %s away %s (median) after it started; at the end of the last round HAProxy showed it %s.\n",
				serverName(cfg.Loaded-1), r.Reacted.Round(100*time.Millisecond), r.LoadedState)
		}
	}
}
