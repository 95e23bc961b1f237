// Command scale measures couchwatch's footprint at the cluster sizes sites have: for
// each size (default 3, 30 and 300 simulated CouchDB nodes) one backend of a real
// HAProxy, couchwatch at its default intervals, built as the Dockerfile builds it. It
// reports couchwatch's CPU (% of one core) and RSS over a window against the targets
// (3 nodes: <= 1 % and <= 48 MiB, the deployment's request; 30 nodes: <= 3 % and
// <= 64 MiB; 300 nodes: a report only), the duration of its reconcile passes (from its
// own histogram), and the time from stopping K nodes until HAProxy shows all K out of
// rotation; ratios against the first size of the same run:
//
//	go run ./bench/scale [-sizes 3,30,300] [-window 60s] [-stop 10]
//
// See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
	"github.com/medic/couchwatch/internal/envconf"
)

type config struct {
	Sizes         []int // cluster sizes, the first is the baseline of the ratios
	Window        time.Duration
	Settle        time.Duration
	Stop          int
	ReadyTimeout  time.Duration
	ChangeTimeout time.Duration
	// Env is extra couchwatch environment (NAME=value), for diagnostic runs; the
	// benchmark proper runs couchwatch at its defaults.
	Env map[string]string
}

func defaultConfig() config {
	return config{Sizes: []int{3, 30, 300}, Window: 60 * time.Second, Settle: 5 * time.Second, Stop: 10,
		ReadyTimeout: 2 * time.Minute, ChangeTimeout: 30 * time.Second}
}

func (c config) validate() error {
	var errs []error
	if len(c.Sizes) == 0 {
		errs = append(errs, errors.New("-sizes: at least one size"))
	}
	for _, n := range c.Sizes {
		if n < 2 || n > 2000 {
			errs = append(errs, fmt.Errorf("-sizes: %d is not 2..2000", n))
		}
	}
	if c.Window <= 0 || c.Window > 30*time.Minute || c.Settle < 0 || c.ReadyTimeout <= 0 || c.ChangeTimeout <= 0 {
		errs = append(errs, errors.New("need 0 < -window <= 30m and positive timeouts"))
	}
	if c.Stop < 1 {
		errs = append(errs, errors.New("-stop must be >= 1"))
	}
	return errors.Join(errs...)
}

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	sizes := fs.String("sizes", "3,30,300", "cluster sizes to measure, comma-separated (the first is the ratios' baseline)")
	fs.DurationVar(&cfg.Window, "window", cfg.Window, "CPU/RSS measurement window")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "wait after every node is up before measuring")
	fs.IntVar(&cfg.Stop, "stop", cfg.Stop, "nodes stopped for the forced change (at most a third of the cluster, at least 1)")
	env := fs.String("env", "", "extra couchwatch environment for a diagnostic run, NAME=value,... (default: none, couchwatch defaults)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Sizes = nil
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fmt.Fprintf(os.Stderr, "scale: -sizes entry %q is not a number\n", f)
			return 2
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	cfg.Env = map[string]string{}
	for _, kv := range strings.Split(*env, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "COUCHWATCH_") {
			fmt.Fprintf(os.Stderr, "scale: -env entry %q is not COUCHWATCH_NAME=value\n", kv)
			return 2
		}
		cfg.Env[k] = v
	}
	return benchkit.Run("scale", cfg.validate, func(ctx context.Context) error {
		_, err := run(ctx, cfg, os.Stdout, os.Stderr)
		return err
	})
}

// row is one cluster size's measurement.
type row struct {
	Nodes       int
	Usage       benchkit.Usage
	ReqRate     float64 // requests/s couchwatch sent to CouchDB
	Passes      float64 // reconcile passes in the window
	PassMean    float64 // seconds
	PassP99     float64 // upper bound of the bucket holding p99, seconds
	PassMax     float64 // upper bound of the highest non-empty bucket, seconds
	Stopped     int
	AllOut      time.Duration
	ChangeMean  float64 // mean pass during the forced change, seconds
	ChangePass  float64 // passes during the forced change
	HAProxyCPU  float64
	HAProxyRSS  float64
	StartupTime time.Duration // couchwatch start until every node up
	HeapMiB     float64       // go_memstats_heap_inuse_bytes at the end of the window
	GoSysMiB    float64       // go_memstats_sys_bytes: everything the Go runtime got from the OS
	Goroutines  float64
}

func run(ctx context.Context, cfg config, out, progress io.Writer) ([]row, error) {
	dir, err := os.MkdirTemp("", "couchwatch-bench-scale-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin, err := benchkit.BuildCouchwatch(ctx, dir)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	var rows []row
	for _, n := range cfg.Sizes {
		fmt.Fprintf(progress, "%d nodes: measuring over %s ...\n", n, cfg.Window)
		r, err := measure(ctx, cfg, bin, n)
		if err != nil {
			if len(rows) > 0 {
				write(out, cfg, started, rows) // what was measured before the failure
			}
			return rows, fmt.Errorf("%d nodes: %w", n, err)
		}
		fmt.Fprintf(progress, "%d nodes: CPU %.2f%%, RSS %.1f MiB, pass mean %s, %d stopped -> all out after %s\n",
			n, r.Usage.CPUPercent, r.Usage.RSSMiB, secs(r.PassMean), r.Stopped, benchkit.Ms(r.AllOut))
		rows = append(rows, r)
	}
	write(out, cfg, started, rows)
	return rows, nil
}

func serverName(i int) string { return fmt.Sprintf("couchdb%d", i+1) }

func measure(ctx context.Context, cfg config, bin string, n int) (row, error) {
	r := row{Nodes: n}
	cluster, err := couchtest.Start(n, couchtest.Options{})
	if err != nil {
		return r, err
	}
	defer cluster.Close()
	specs := make([]haproxytest.ServerSpec, n)
	for i, node := range cluster.Nodes() {
		specs[i] = haproxytest.ServerSpec{Name: serverName(i), Addr: node.Addr()}
	}
	hap, err := haproxytest.Start(haproxytest.Options{Servers: specs, StartTimeout: 30 * time.Second})
	if err != nil {
		return r, err
	}
	defer hap.Close()
	t0 := time.Now()
	cw, err := benchkit.StartCouchwatch(ctx, bin, benchkit.CouchwatchEnv{
		Servers: cluster.Targets(), User: cluster.User(), Password: cluster.Password(), Socket: hap.Socket(),
		Tuning: cfg.Env,
	}, cfg.ReadyTimeout)
	if err != nil {
		return r, err
	}
	defer cw.Stop()
	if err := cw.WaitVerdicts(ctx, "up", n, cfg.ReadyTimeout); err != nil {
		return r, fmt.Errorf("couchwatch: %w\n%s", err, tailString(cw.Output(), 4000))
	}
	r.StartupTime = time.Since(t0)
	if err := benchkit.Sleep(ctx, cfg.Settle); err != nil {
		return r, err
	}

	hapPid, err := benchkit.HAProxyWorkerPid(hap.Socket())
	if err != nil {
		return r, err
	}
	m0, err := cw.Metrics(ctx)
	if err != nil {
		return r, err
	}
	p0, err := benchkit.ReadProc(cw.Pid())
	if err != nil {
		return r, err
	}
	h0, err := benchkit.ReadProc(hapPid)
	if err != nil {
		return r, err
	}
	req0 := requests(cluster)
	if err := benchkit.Sleep(ctx, cfg.Window); err != nil {
		return r, err
	}
	p1, err := benchkit.ReadProc(cw.Pid())
	if err != nil {
		return r, err
	}
	h1, err := benchkit.ReadProc(hapPid)
	if err != nil {
		return r, err
	}
	req1 := requests(cluster)
	m1, err := cw.Metrics(ctx)
	if err != nil {
		return r, err
	}
	r.Usage = benchkit.UsageBetween(p0, p1)
	r.HeapMiB = m1.Sum("go_memstats_heap_inuse_bytes", nil) / (1 << 20)
	r.GoSysMiB = m1.Sum("go_memstats_sys_bytes", nil) / (1 << 20)
	r.Goroutines = m1.Sum("go_goroutines", nil)
	hu := benchkit.UsageBetween(h0, h1)
	r.HAProxyCPU, r.HAProxyRSS = hu.CPUPercent, hu.RSSMiB
	r.ReqRate = float64(req1-req0) / r.Usage.Window.Seconds()
	const hist = "couchwatch_haproxy_reconcile_duration_seconds"
	h := m1.Histogram(hist).Sub(m0.Histogram(hist))
	r.Passes, r.PassMean, r.PassP99, r.PassMax = h.Count, h.Mean(), h.UpperBound(0.99), h.UpperBound(1)
	if h.Count == 0 {
		return r, errors.New("couchwatch ran no reconcile pass in the window")
	}

	// Forced change: stop k nodes (never node 1) and time until HAProxy shows every one
	// out of rotation.
	k := min(cfg.Stop, max(1, n/3))
	r.Stopped = k
	start := time.Now()
	for i := 1; i <= k; i++ {
		cluster.Nodes()[i].Stop()
	}
	err = benchkit.WaitFor(ctx, cfg.ChangeTimeout, 5*time.Millisecond, func() (bool, error) {
		st, err := benchkit.ReadStates(hap.Socket(), hap.Backend())
		if err != nil {
			return false, nil
		}
		for i := 1; i <= k; i++ {
			if st[serverName(i)].InRotation() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return r, fmt.Errorf("%d stopped nodes not all out of rotation: %w\n%s", k, err, tailString(cw.Output(), 4000))
	}
	r.AllOut = time.Since(start)
	m2, err := cw.Metrics(ctx)
	if err != nil {
		return r, err
	}
	hc := m2.Histogram(hist).Sub(m1.Histogram(hist))
	r.ChangePass, r.ChangeMean = hc.Count, hc.Mean()
	return r, nil
}

func requests(c *couchtest.Cluster) int64 {
	var t int64
	for _, n := range c.Nodes() {
		s := n.Stats()
		t += s.Up + s.Membership + s.System + s.ActiveTasks + s.Config + s.NodeInfo + s.Session + s.Data
	}
	return t
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func secs(s float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case math.IsInf(s, 1):
		return "+Inf"
	}
	return benchkit.Ms(time.Duration(s * float64(time.Second)))
}

// target is a footprint target: CPU in % of one core and RSS in MiB.
type target struct{ cpu, rss float64 }

// targets by cluster size (issue 11.5): 3 nodes within the deployment's memory request,
// 30 nodes; larger sizes are reported only.
var targets = map[int]target{3: {cpu: 1, rss: 48}, 30: {cpu: 3, rss: 64}}

func judge(r row) string {
	tg, ok := targets[r.Nodes]
	if !ok {
		return "report only"
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	return fmt.Sprintf("CPU <= %.0f %%: %s; RSS <= %.0f MiB: %s", tg.cpu, verdict(r.Usage.CPUPercent <= tg.cpu),
		tg.rss, verdict(r.Usage.RSSMiB <= tg.rss))
}

func write(w io.Writer, cfg config, started time.Time, rows []row) {
	fmt.Fprintf(w, "# scale: %s, %s/%s, %d CPUs, HAProxy 2.6\n", started.UTC().Format("2006-01-02 15:04 MST"),
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if len(cfg.Env) == 0 {
		d := envconf.Defaults[checks.Config]()
		fmt.Fprintf(w, "\ncouchwatch at its defaults (runtime API, probe %s, _system %s, membership %s, reconcile 1s, hold connection),\n",
			d.Interval, d.SystemInterval, d.MembershipInterval)
	} else {
		fmt.Fprintf(w, "\ncouchwatch with %v (diagnostic run; the rest at defaults),\n", cfg.Env)
	}
	fmt.Fprintf(w, "built as the Dockerfile builds it (static, stripped); one HAProxy backend with every node as a server (no HAProxy checks);\n")
	fmt.Fprintf(w, "idle nodes, no client load. CPU in %% of one core and RSS over %s; pass = couchwatch_haproxy_reconcile_duration_seconds\n", cfg.Window)
	fmt.Fprintf(w, "over the same window (mean = sum/count; p99 and max are bucket upper bounds); forced change = stop K nodes, time until HAProxy shows all K out.\n")
	ft := benchkit.Table{Header: []string{"nodes", "couchwatch CPU", "RSS", "peak RSS", "target"}}
	for _, r := range rows {
		ft.Add(fmt.Sprint(r.Nodes), fmt.Sprintf("%.2f %%", r.Usage.CPUPercent), fmt.Sprintf("%.1f MiB", r.Usage.RSSMiB),
			fmt.Sprintf("%.1f MiB", r.Usage.PeakMiB), judge(r))
	}
	fmt.Fprintf(w, "\nFootprint against the targets:\n")
	ft.Write(w)
	fmt.Fprintf(w, "\nDetail:\n")
	t := benchkit.Table{Header: []string{"nodes", "couchwatch CPU", "RSS", "RSS anon / file", "peak RSS", "requests/s to CouchDB", "passes/s",
		"pass mean", "pass p99 <=", "pass max <=", "K stopped: all out after", "pass mean during change", "HAProxy worker CPU", "start to all up", "Go heap in use", "Go sys", "goroutines"}}
	for _, r := range rows {
		t.Add(fmt.Sprint(r.Nodes), fmt.Sprintf("%.2f %%", r.Usage.CPUPercent), fmt.Sprintf("%.1f MiB", r.Usage.RSSMiB),
			fmt.Sprintf("%.1f / %.1f MiB", r.Usage.AnonMiB, r.Usage.FileMiB),
			fmt.Sprintf("%.1f MiB", r.Usage.PeakMiB), fmt.Sprintf("%.0f", r.ReqRate),
			fmt.Sprintf("%.2f", r.Passes/r.Usage.Window.Seconds()), secs(r.PassMean), secs(r.PassP99), secs(r.PassMax),
			fmt.Sprintf("%d: %s", r.Stopped, benchkit.Ms(r.AllOut)), secs(r.ChangeMean), fmt.Sprintf("%.2f %%", r.HAProxyCPU),
			benchkit.Ms(r.StartupTime), fmt.Sprintf("%.1f MiB", r.HeapMiB), fmt.Sprintf("%.1f MiB", r.GoSysMiB), fmt.Sprintf("%.0f", r.Goroutines))
	}
	for _, b := range rows[1:] {
		a := rows[0]
		t.Add(fmt.Sprintf("ratio %d/%d", b.Nodes, a.Nodes), benchkit.Ratio(b.Usage.CPUPercent, a.Usage.CPUPercent),
			benchkit.Ratio(b.Usage.RSSMiB, a.Usage.RSSMiB), benchkit.Ratio(b.Usage.AnonMiB, a.Usage.AnonMiB)+" anon",
			benchkit.Ratio(b.Usage.PeakMiB, a.Usage.PeakMiB),
			benchkit.Ratio(b.ReqRate, a.ReqRate), "", benchkit.Ratio(b.PassMean, a.PassMean), "", "",
			benchkit.Ratio(float64(b.AllOut), float64(a.AllOut)), benchkit.Ratio(b.ChangeMean, a.ChangeMean),
			benchkit.Ratio(b.HAProxyCPU, a.HAProxyCPU), "", benchkit.Ratio(b.HeapMiB, a.HeapMiB), benchkit.Ratio(b.GoSysMiB, a.GoSysMiB),
			benchkit.Ratio(b.Goroutines, a.Goroutines))
	}
	t.Write(w)
}
