// Command couchsim runs a simulated CouchDB 3.4.3 cluster (package couchtest) on
// 127.0.0.1 and a small control API on its own listener, so a hung node can still be
// steered:
//
//	couchsim -nodes 3 -ports 15984,25984,35984 -control 127.0.0.1:5990
//	curl -X POST 127.0.0.1:5990/nodes/2/stop      (start, hang, resume)
//	curl -X POST '127.0.0.1:5990/nodes/2/maintenance?mode=nolb'
//	curl -X POST '127.0.0.1:5990/nodes/2/load?level=0.9'
//	curl 127.0.0.1:5990/                           (status and usage)
//
// Nodes are numbered from 1, like their Erlang names (couchdb1@127.0.0.1).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/medic/couchwatch/couch/couchtest"
)

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("couchsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 3, "number of nodes")
	ports := fs.String("ports", "", "comma-separated node ports on 127.0.0.1 (default: ephemeral)")
	control := fs.String("control", "127.0.0.1:0", "control API listen address (127.0.0.1 only)")
	user := fs.String("user", couchtest.DefaultUser, "admin user")
	password := fs.String("password", couchtest.DefaultPassword, "admin password")
	tick := fs.Duration("net-ticktime", couchtest.DefaultNetTickTime, "how long a hung node stays in its peers' all_nodes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opt := couchtest.Options{User: *user, Password: *password, NetTickTime: *tick}
	if *ports != "" {
		for _, p := range strings.Split(*ports, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 1 || n > 65535 {
				fmt.Fprintf(stderr, "couchsim: bad port %q\n", p)
				return 2
			}
			opt.Ports = append(opt.Ports, n)
		}
	}
	host, _, err := net.SplitHostPort(*control)
	if err != nil || host != "127.0.0.1" {
		fmt.Fprintf(stderr, "couchsim: -control must be 127.0.0.1:PORT\n")
		return 2
	}
	c, err := couchtest.Start(*nodes, opt)
	if err != nil {
		fmt.Fprintf(stderr, "couchsim: %v\n", err)
		return 1
	}
	defer c.Close()
	ln, err := net.Listen("tcp", *control)
	if err != nil {
		fmt.Fprintf(stderr, "couchsim: control: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: newControl(c), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "COUCHDB_SERVERS=%s\n", c.Targets())
	fmt.Fprintf(stdout, "control http://%s/\n", ln.Addr())

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintf(stderr, "couchsim: control: %v\n", err)
		return 1
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "couchsim: shutdown: %v\n", err)
	}
	return 0
}

const usage = `usage (nodes numbered from 1):
  POST /nodes/N/stop | start | hang | resume
  POST /nodes/N/maintenance?mode=(|true|nolb)
  POST /nodes/N/load?level=0..1
  POST /nodes/N/fault?f=(none|5xx|malformed|oversized)
  POST /nodes/N/latency?d=250ms           POST /nodes/N/latency-per-inflight?d=10ms
  POST /nodes/N/missing?v=(true|false)    POST /nodes/N/tasks?name=(idle|view_build|db_compaction|replication)
  POST /sessions/expire
  GET  /   this page
`

func newControl(c *couchtest.Cluster) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "COUCHDB_SERVERS=%s\n\n", c.Targets())
		for i, n := range c.Nodes() {
			s := n.Status()
			st := n.Stats()
			fmt.Fprintf(w, "node %d %s %s running=%t hung=%t missing=%t fault=%s maintenance=%q load=%.2f latency=%v per_inflight=%v requests(up=%d data=%d) logins=%d basic=%d inflight=%d\n",
				i+1, s.Name, s.Addr, s.Running, s.Hung, s.Missing, s.Fault, s.Maintenance, s.Load, s.Latency, s.PerInflight,
				st.Up, st.Data, st.Logins, st.BasicAuth, st.InFlight)
		}
		fmt.Fprint(w, "\n"+usage)
	})
	mux.HandleFunc("POST /sessions/expire", func(w http.ResponseWriter, _ *http.Request) {
		c.ExpireSessions()
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /nodes/{n}/{action}", func(w http.ResponseWriter, r *http.Request) {
		nodes := c.Nodes()
		i, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || i < 1 || i > len(nodes) {
			http.Error(w, fmt.Sprintf("no node %q (1-%d)\n", r.PathValue("n"), len(nodes)), http.StatusNotFound)
			return
		}
		if err := act(c, i-1, nodes[i-1], r.PathValue("action"), r); err != nil {
			http.Error(w, err.Error()+"\n\n"+usage, http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func act(c *couchtest.Cluster, i int, n *couchtest.Node, action string, r *http.Request) error {
	q := r.URL.Query()
	switch action {
	case "stop":
		n.Stop()
	case "start":
		return n.Start()
	case "hang":
		n.Hang()
	case "resume":
		n.Resume()
	case "maintenance":
		return n.SetMaintenance(q.Get("mode"))
	case "load":
		level, err := strconv.ParseFloat(q.Get("level"), 64)
		if err != nil || level < 0 || level > 1 {
			return fmt.Errorf("level %q: want 0..1", q.Get("level"))
		}
		n.SetLoad(level)
	case "fault":
		f, err := couchtest.ParseFault(q.Get("f"))
		if err != nil {
			return err
		}
		n.SetFault(f)
	case "latency", "latency-per-inflight":
		d, err := time.ParseDuration(q.Get("d"))
		if err != nil || d < 0 {
			return fmt.Errorf("d %q: want a duration like 250ms", q.Get("d"))
		}
		if action == "latency" {
			n.SetLatency(d)
		} else {
			n.SetLatencyPerInflight(d)
		}
	case "missing":
		v, err := strconv.ParseBool(q.Get("v"))
		if err != nil {
			return fmt.Errorf("v %q: want true or false", q.Get("v"))
		}
		c.SetMissingFromPeers(i, v)
	case "tasks":
		return n.SetActiveTasks(q.Get("name"))
	default:
		return fmt.Errorf("unknown action %q", action)
	}
	return nil
}
