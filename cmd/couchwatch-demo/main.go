// Command couchwatch-demo runs couchwatch live on one machine: three simulated CouchDB
// nodes (couch/couchtest), a real HAProxy in front of them (haproxy/haproxytest), the
// couchwatch binary steering HAProxy through its runtime API, and a small bounded stream
// of requests through HAProxy. It prints what HAProxy itself reports and takes commands
// (stop 2, hang 2, resume 2, nolb 2, load 2 0.9, reload, ...) so you can watch
// couchwatch drain and restore nodes. Without a terminal it plays a scripted tour.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

func main() { os.Exit(run()) }

func run() int {
	bin := flag.String("couchwatch", "", "path to the couchwatch binary (required)")
	duration := flag.Duration("duration", 30*time.Minute, "stop by itself after this long")
	rate := flag.Int("rate", 20, "requests per second sent through HAProxy (bounded)")
	script := flag.Bool("script", false, "play the scripted tour and exit (default when stdin is not a terminal)")
	listen := flag.String("listen", "127.0.0.1:9155", "couchwatch's HTTP address (status page, /metrics)")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "couchwatch-demo: -couchwatch is required")
		return 2
	}
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
		*script = true // not a terminal
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	d, err := start(ctx, cancel, *bin, *listen, *rate)
	if err != nil {
		fmt.Fprintln(os.Stderr, "couchwatch-demo:", err)
		return 1
	}
	defer d.close()
	d.banner()
	if *script {
		if err := d.tour(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "couchwatch-demo: tour:", err)
			d.dumpLog(os.Stderr)
			return 1
		}
		fmt.Println("\ntour done: every step was observed in HAProxy's own state.")
		return 0
	}
	d.interactive(ctx)
	return 0
}

type demo struct {
	cluster *couchtest.Cluster
	hap     *haproxytest.Proc
	cw      *exec.Cmd
	cwBin   string   // the couchwatch binary, for its status/drain/undrain commands
	cwEnv   []string // couchwatch's environment, which those commands read too
	cwDone  chan error
	logPath string
	listen  string
	stop    context.CancelFunc // ends the traffic
	names   []string           // HAProxy server names, in node order

	ok, failed atomic.Int64
	mu         sync.Mutex
	byNode     map[string]int64
	wg         sync.WaitGroup
}

func start(ctx context.Context, stop context.CancelFunc, bin, listen string, rate int) (*demo, error) {
	cl, err := couchtest.Start(3, couchtest.Options{NetTickTime: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	// CHT runs CouchDB with q=12, n=1: the status page then shows which shard ranges a
	// lost node takes with it.
	cl.SetConfig("cluster", "n", "1")
	cl.SetConfig("cluster", "q", "12")
	d := &demo{cluster: cl, listen: listen, byNode: map[string]int64{}, stop: stop, cwBin: bin}
	var specs []haproxytest.ServerSpec
	var servers []string
	for i, n := range cl.Nodes() {
		name := fmt.Sprintf("couchdb-%d", i+1)
		d.names = append(d.names, name)
		specs = append(specs, haproxytest.ServerSpec{Name: name, Addr: n.Addr()})
		servers = append(servers, n.Addr())
	}
	d.hap, err = haproxytest.Start(haproxytest.Options{Servers: specs})
	if err != nil {
		cl.Close()
		return nil, err
	}
	d.logPath = filepath.Join(d.hap.Dir(), "couchwatch.log")
	logf, err := os.Create(d.logPath)
	if err != nil {
		d.close()
		return nil, err
	}
	d.cwEnv = append(os.Environ(),
		"COUCHDB_SERVERS="+strings.Join(servers, ","),
		"COUCHDB_USER="+cl.User(), "COUCHDB_PASSWORD="+cl.Password(),
		"COUCHWATCH_HAPROXY_SOCKET="+d.hap.Socket(),
		"COUCHWATCH_LISTEN="+listen, "COUCHWATCH_AGENT_LISTEN=off",
		"COUCHWATCH_LOG_FORMAT=text", "COUCHWATCH_KUBE=off",
		"COUCHWATCH_SYSTEM_INTERVAL=1s", "COUCHWATCH_LOAD_SUSTAIN=3s", "COUCHWATCH_LOAD_COOLDOWN=3s",
		"COUCHWATCH_SLOWSTART=10s", "COUCHWATCH_SHARDS_REFRESH=5s",
	)
	d.cw = exec.Command(bin)
	d.cw.Env = d.cwEnv
	d.cw.Stdout, d.cw.Stderr = logf, logf
	if err := d.cw.Start(); err != nil {
		logf.Close()
		d.close()
		return nil, fmt.Errorf("start couchwatch: %w", err)
	}
	d.cwDone = make(chan error, 1)
	go func() { d.cwDone <- d.cw.Wait(); logf.Close() }()
	if err := d.waitReady(ctx); err != nil {
		d.dumpLog(os.Stderr)
		d.close()
		return nil, err
	}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.traffic(ctx, rate) }()
	return d, nil
}

func (d *demo) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.cwDone:
			return fmt.Errorf("couchwatch exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := http.Get("http://" + d.listen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("couchwatch did not become ready within 15s")
}

func (d *demo) close() {
	d.stop()
	if d.cw != nil && d.cw.Process != nil {
		_ = d.cw.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.cwDone:
		case <-time.After(5 * time.Second):
			_ = d.cw.Process.Kill()
		}
	}
	d.wg.Wait()
	if d.hap != nil {
		_ = d.hap.Close()
	}
	d.cluster.Close()
}

// traffic sends rate requests per second through HAProxy until ctx ends.
func (d *demo) traffic(ctx context.Context, rate int) {
	rate = max(1, min(rate, 200))
	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	sem := make(chan struct{}, 32)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			d.failed.Add(1) // too many stuck: count as failed rather than pile up
			continue
		}
		go func() {
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.hap.FrontendAddr()+"/medic", nil)
			req.SetBasicAuth(d.cluster.User(), d.cluster.Password())
			resp, err := client.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					d.failed.Add(1)
				}
				return
			}
			defer resp.Body.Close()
			var body struct{ Node string }
			if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body) != nil {
				d.failed.Add(1)
				return
			}
			d.ok.Add(1)
			d.mu.Lock()
			d.byNode[body.Node]++
			d.mu.Unlock()
		}()
	}
}

func (d *demo) banner() {
	fmt.Printf(`couchwatch demo
  simulated CouchDB nodes: %s
  HAProxy frontend:        http://%s/ (backend couchdb-servers, admin socket %s)
  couchwatch status page:  http://%s/   metrics: http://%s/metrics
  couchwatch log:          %s
`, d.cluster.Targets(), d.hap.FrontendAddr(), d.hap.Socket(), d.listen, d.listen, d.logPath)
}

// table prints what HAProxy itself reports for each server, and the traffic so far.
func (d *demo) table(w io.Writer) {
	servers, err := d.hap.Servers(haproxytest.DefaultBackend)
	if err != nil {
		fmt.Fprintln(w, "haproxy:", err)
		return
	}
	d.mu.Lock()
	byNode := make(map[string]int64, len(d.byNode))
	for k, v := range d.byNode {
		byNode[k] = v
	}
	d.mu.Unlock()
	fmt.Fprintf(w, "%-10s %-9s %-6s %-28s %s\n", "server", "status", "weight", "simulated node", "requests served")
	for i, name := range d.names {
		s := servers[name]
		n := d.cluster.Nodes()[i]
		st := n.Status()
		fmt.Fprintf(w, "%-10s %-9s %-6d %-28s %d\n", name, s.Status, s.Weight, fmt.Sprintf("%s %s", n.ErlangName(), describe(st)), byNode[n.ErlangName()])
	}
	fmt.Fprintf(w, "requests through HAProxy: %d ok, %d failed\n", d.ok.Load(), d.failed.Load())
}

func describe(st couchtest.Status) string {
	var parts []string
	if !st.Running {
		parts = append(parts, "stopped")
	}
	if st.Hung {
		parts = append(parts, "hung")
	}
	if st.Fault != couchtest.FaultNone {
		parts = append(parts, "fault="+st.Fault.String())
	}
	if st.Maintenance != "" {
		parts = append(parts, "maintenance="+st.Maintenance)
	}
	if st.Load > 0 {
		parts = append(parts, "load="+strconv.FormatFloat(st.Load, 'g', 2, 64))
	}
	if len(parts) == 0 {
		return "(healthy)"
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func (d *demo) dumpLog(w io.Writer) {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	fmt.Fprintf(w, "--- couchwatch log (tail) ---\n%s\n", b)
}

const help = `commands (N is 1, 2 or 3):
  stop N | start N        crash the node (connections reset) / start it again
  hang N | resume N       the node accepts connections but never answers / answers again
  nolb N | maint N | online N   CouchDB maintenance_mode nolb / true / off
  load N LEVEL            saturation 0..1 seen in the node's _system (try 1)
  5xx N | ok N            the node answers 500 / normally
  reload                  reload HAProxy (wipes runtime changes: watch couchwatch repair them)
  drain N | undrain N     couchwatch drain/undrain: maintenance_mode = nolb through _config, waits for no sessions
  status                  couchwatch status: the status page in the terminal
  show | help | quit`

func (d *demo) interactive(ctx context.Context) {
	fmt.Println(help)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	show := time.NewTicker(2 * time.Second)
	defer show.Stop()
	d.table(os.Stdout)
	for {
		fmt.Print("> ")
		select {
		case <-ctx.Done():
			return
		case <-show.C:
			fmt.Println()
			d.table(os.Stdout)
			continue
		case line, ok := <-lines:
			if !ok || strings.TrimSpace(line) == "quit" {
				return
			}
			if err := d.do(line); err != nil {
				fmt.Println("error:", err)
			}
			d.table(os.Stdout)
		}
	}
}

// do runs one command.
func (d *demo) do(line string) error {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil
	}
	if f[0] == "help" {
		fmt.Println(help)
		return nil
	}
	if f[0] == "show" {
		return nil
	}
	if f[0] == "reload" {
		return d.hap.Reload()
	}
	if f[0] == "status" {
		return d.couchwatch("status", "-events", "12")
	}
	if len(f) < 2 {
		return fmt.Errorf("%q needs a node number", f[0])
	}
	i, err := strconv.Atoi(f[1])
	if err != nil || i < 1 || i > len(d.names) {
		return fmt.Errorf("no node %q", f[1])
	}
	n := d.cluster.Nodes()[i-1]
	switch f[0] {
	case "stop":
		n.Stop()
	case "start":
		return n.Start()
	case "hang":
		n.Hang()
	case "resume":
		n.Resume()
	case "nolb":
		return n.SetMaintenance("nolb")
	case "maint":
		return n.SetMaintenance("true")
	case "online":
		return n.SetMaintenance("")
	case "5xx":
		n.SetFault(couchtest.Fault5xx)
	case "ok":
		n.SetFault(couchtest.FaultNone)
	case "drain", "undrain":
		return d.couchwatch(f[0], n.Addr())
	case "load":
		if len(f) < 3 {
			return errors.New("load N LEVEL")
		}
		lvl, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return err
		}
		n.SetLoad(lvl)
	default:
		return fmt.Errorf("unknown command %q (help lists them)", f[0])
	}
	return nil
}

// tour plays a fixed scenario and checks each step in HAProxy's own state.
func (d *demo) tour(ctx context.Context) error {
	isMaint := func(s haproxytest.Server) bool { return s.AdminBits&0x01 != 0 }
	isDrain := func(s haproxytest.Server) bool { return s.AdminBits&0x08 != 0 }
	isReady := func(s haproxytest.Server) bool { return s.AdminBits == 0 }
	steps := []struct {
		say, cmd, server string
		cond             func(haproxytest.Server) bool
	}{
		{"crash node 2: couchwatch puts couchdb-2 in maint", "stop 2", "couchdb-2", isMaint},
		{"start node 2 again: couchwatch verifies it and makes it ready", "start 2", "couchdb-2", isReady},
		{"hang node 3 (accepts, never answers): taken out after COUCHWATCH_FALL probes time out", "hang 3", "couchdb-3", isMaint},
		{"resume node 3", "resume 3", "couchdb-3", isReady},
		{"node 1 enters CouchDB maintenance_mode=nolb: drained, then maint once idle", "nolb 1", "couchdb-1", func(s haproxytest.Server) bool { return isDrain(s) || isMaint(s) }},
		{"node 1 back online", "online 1", "couchdb-1", isReady},
		{"take node 3 out by hand: couchwatch drain (maintenance_mode = nolb, waits for its last session)", "drain 3", "couchdb-3", isMaint},
		{"couchwatch undrain: back in rotation once it passes its checks", "undrain 3", "couchdb-3", isReady},
		{"reload HAProxy with node 2 crashed: runtime state is lost, couchwatch repairs it", "stop 2", "couchdb-2", isMaint},
		{"", "reload", "couchdb-2", isMaint},
		{"start node 2 again", "start 2", "couchdb-2", isReady},
	}
	for _, s := range steps {
		if s.say != "" {
			fmt.Printf("\n== %s\n", s.say)
		}
		fmt.Printf("> %s\n", s.cmd)
		t0 := time.Now()
		if err := d.do(s.cmd); err != nil {
			return err
		}
		if _, err := d.hap.PollServer(ctx, haproxytest.DefaultBackend, s.server, s.cond, 20*time.Second); err != nil {
			return fmt.Errorf("%s: %w", s.cmd, err)
		}
		fmt.Printf("   seen in HAProxy after %s\n", time.Since(t0).Round(time.Millisecond))
		d.table(os.Stdout)
	}
	fmt.Println("\n== couchwatch status: the status page in the terminal")
	return d.couchwatch("status", "-events", "12")
}

// couchwatch runs one of couchwatch's own commands, as an operator would in its
// container, and prints what it says.
func (d *demo) couchwatch(args ...string) error {
	cmd := exec.Command(d.cwBin, args...)
	cmd.Env = d.cwEnv
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("couchwatch %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
