package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/medic/couchwatch/couch"
)

// The operator's commands, run inside the couchwatch container (kubectl exec, docker
// compose exec) against the running couchwatch:
//
//	couchwatch status           the status page in a terminal (reads /status.json)
//	couchwatch drain NODE       CouchDB maintenance_mode = nolb, then wait for no sessions
//	couchwatch undrain NODE     maintenance_mode = false, then wait for ready
var commands = map[string]func(c *cli, ctx context.Context, args []string) int{
	"status":  (*cli).status,
	"drain":   (*cli).drain,
	"undrain": (*cli).undrain,
}

type cli struct {
	env            envconfig.Lookuper
	stdout, stderr io.Writer
	addr           string        // couchwatch's HTTP address
	poll           time.Duration // how often drain and undrain re-read the status

	// With COUCHWATCH_WEB_CONFIG_FILE (TLS, basic auth) the status is read over https
	// and/or with a user; the password comes from COUCHWATCH_CLI_PASSWORD (the config
	// holds only its bcrypt hash).
	https, insecure bool
	caFile, user    string
}

// runCommand runs one of commands; args[0] is its name.
func runCommand(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{env: env, stdout: stdout, stderr: stderr, poll: 500 * time.Millisecond}
	return commands[args[0]](c, ctx, args[1:])
}

// flags parses the common flags: -addr (default: COUCHWATCH_LISTEN, on 127.0.0.1 when
// it names no host).
func (c *cli) flags(name, usage string, args []string, extra func(*flag.FlagSet)) (*flag.FlagSet, bool) {
	listen, ok := c.env.Lookup("COUCHWATCH_LISTEN")
	if !ok || listen == "" {
		listen = ":9155"
	}
	if host, port, err := net.SplitHostPort(listen); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		listen = net.JoinHostPort("127.0.0.1", port)
	}
	fs := flag.NewFlagSet("couchwatch "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.addr, "addr", listen, "couchwatch's HTTP address (default from COUCHWATCH_LISTEN)")
	fs.BoolVar(&c.https, "https", false, "couchwatch serves TLS (tls_server_config in COUCHWATCH_WEB_CONFIG_FILE)")
	fs.StringVar(&c.caFile, "ca-file", "", "CA certificate to verify couchwatch's TLS certificate with (with -https)")
	fs.BoolVar(&c.insecure, "insecure-skip-verify", false, "do not verify couchwatch's TLS certificate (with -https)")
	fs.StringVar(&c.user, "user", "", "basic auth user (basic_auth_users); the password is read from COUCHWATCH_CLI_PASSWORD")
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: couchwatch %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fs, false
	}
	return fs, true
}

// fetchStatus reads /status.json from the running couchwatch.
func (c *cli) fetchStatus(ctx context.Context) (statusView, error) {
	var v statusView
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	scheme, client := "http", http.DefaultClient
	if c.https {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.insecure} // #nosec G402: only on request, for a self-signed local certificate
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return v, fmt.Errorf("-ca-file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return v, fmt.Errorf("-ca-file %s: no PEM certificate", c.caFile)
			}
		}
		scheme, client = "https", &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+c.addr+"/status.json", nil)
	if err != nil {
		return v, err
	}
	if c.user != "" {
		pw, _ := c.env.Lookup("COUCHWATCH_CLI_PASSWORD")
		req.SetBasicAuth(c.user, pw)
	}
	resp, err := client.Do(req)
	if err != nil {
		return v, fmt.Errorf("couchwatch at %s does not answer (is it running? -addr or COUCHWATCH_LISTEN; -https if it serves TLS): %w", c.addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return v, fmt.Errorf("couchwatch at %s wants basic auth (COUCHWATCH_WEB_CONFIG_FILE): -user NAME and COUCHWATCH_CLI_PASSWORD", c.addr)
	}
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("couchwatch at %s: /status.json answered %s", c.addr, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&v); err != nil {
		return v, fmt.Errorf("couchwatch at %s: /status.json: %w", c.addr, err)
	}
	return v, nil
}

func (c *cli) status(ctx context.Context, args []string) int {
	var events int
	if _, ok := c.flags("status", "[-addr host:port] [-events N]", args, func(fs *flag.FlagSet) {
		fs.IntVar(&events, "events", 20, "timeline events to print (newest first)")
	}); !ok {
		return 2
	}
	v, err := c.fetchStatus(ctx)
	if err != nil {
		fmt.Fprintln(c.stderr, "couchwatch status:", err)
		return 1
	}
	printStatus(c.stdout, v, events)
	return 0
}

// printStatus renders the status page as text.
func printStatus(w io.Writer, v statusView, events int) {
	fmt.Fprintf(w, "couchwatch %s · mode %s · backend %s · cluster n=%d · min ready %d · %s · kubernetes %s\n",
		v.Version, v.Mode, v.Backend, v.ClusterN, v.MinReady, v.Budget, v.Kube)
	if v.FailOpen {
		fmt.Fprintln(w, "FAIL OPEN: every node looks bad at once; every server is handed back to HAProxy (rule 1)")
	}
	if v.HAProxyErr != "" {
		fmt.Fprintln(w, "HAProxy runtime API:", v.HAProxyErr)
	}
	if len(v.Unmapped) > 0 {
		fmt.Fprintln(w, "nodes without a HAProxy server:", strings.Join(v.Unmapped, " "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCOUCHDB\tSERVER\tVERDICT\t/_UP\tLOAD\tLATENCY\tWANT\tHAPROXY")
	for _, n := range v.Nodes {
		up := "answered " + n.Probe.UpStatus + " " + agoText(v.Now, n.Probe.LastProbe)
		if !n.Probe.Current {
			up = "NO ANSWER " + agoText(v.Now, n.Probe.LastProbe)
			if n.Probe.UpStatus != "" {
				up += " (last answer " + n.Probe.UpStatus + " " + agoText(v.Now, n.Probe.LastAnswer) + ")"
			}
		}
		load := "unknown"
		if n.Load.Known {
			load = fmt.Sprintf("%.2f %s", n.Load.Score, n.Load.Signal)
		}
		want := "-"
		if n.Want.State != "" {
			want = n.Want.State + " " + weightText(n.Want.Weight)
		}
		hap := "-"
		if n.HAProxy.Reported {
			hap = fmt.Sprintf("%s %s weight %d, %d sessions", n.HAProxy.Admin, n.HAProxy.Op, n.HAProxy.Weight, n.HAProxy.Sessions)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1f ms\t%s\t%s\n", n.Node, orDash(n.ErlangName), orDash(n.Server), n.Verdict, up, load,
			n.Probe.LatencyMS, strings.TrimSpace(want), hap)
	}
	tw.Flush()
	for _, n := range v.Nodes {
		fmt.Fprintf(w, "  %s: %s (since %s)", n.Node, n.Reason, agoText(v.Now, n.Since))
		if n.Rule != "" {
			fmt.Fprintf(w, "; %s", n.Rule)
		}
		if n.Probe.Failure != "" {
			fmt.Fprintf(w, "; probe: %s", n.Probe.Failure)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	b := v.Blast
	switch {
	case b.Error != "" && !b.Known:
		fmt.Fprintln(w, "blast radius: unknown:", b.Error)
	case !b.Known:
		fmt.Fprintln(w, "blast radius: shard maps not read yet")
	case len(b.Lost) == 0:
		fmt.Fprintf(w, "blast radius: every shard range of the %d databases read is available\n", b.DBs)
	default:
		fmt.Fprintf(w, "blast radius: %d database(s) with unavailable shard ranges (lost: %s)\n", len(b.Lost), strings.Join(b.LostNodes, ", "))
		if b.LoginsAffected {
			fmt.Fprintln(w, "  LOGINS AFFECTED: part of _users is unavailable")
		}
		for _, l := range b.Lost {
			fmt.Fprintf(w, "  %s: %d of %d ranges: %s\n", l.DB, len(l.Ranges), l.Of, strings.Join(l.Ranges, " "))
		}
	}
	if events > 0 {
		fmt.Fprintf(w, "\ntimeline (newest first, %d of %d):\n", min(events, len(v.Timeline)), v.TimelineTotal)
		for i, e := range v.Timeline {
			if i >= events {
				break
			}
			who := strings.TrimSpace(e.Node + " " + e.Server)
			line := fmt.Sprintf("  %s  %-9s %s  %s", e.At.UTC().Format("15:04:05.000"), e.Kind, who, e.Text)
			if e.Reason != "" {
				line += "  (" + e.Reason + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// findNode finds NODE by its COUCHDB_SERVERS name, its HAProxy server or its Erlang name.
func findNode(v statusView, name string) (nodeView, error) {
	var names []string
	for _, n := range v.Nodes {
		if name == n.Node || (name == n.Server && n.Server != "") || (name == n.ErlangName && n.ErlangName != "") {
			return n, nil
		}
		names = append(names, n.Node)
	}
	return nodeView{}, fmt.Errorf("no node %q (nodes: %s; a HAProxy server or CouchDB name works too)", name, strings.Join(names, ", "))
}

// drainRefusal says why taking target out would break a safety rule, "" if it would not.
// The floor is half the servers rounded up, or COUCHWATCH_MIN_READY if higher.
func drainRefusal(v statusView, target nodeView) string {
	if v.FailOpen {
		return "couchwatch is failing open (every node looks bad): fix that first"
	}
	readyOthers := 0
	for _, n := range v.Nodes {
		if n.Node != target.Node && serving(n) {
			readyOthers++
		}
	}
	floor := max((len(v.Nodes)+1)/2, v.MinReady)
	switch {
	case readyOthers == 0:
		return fmt.Sprintf("%s is the last ready server: draining it would leave HAProxy nothing to send requests to (rule 1)", target.Node)
	case readyOthers < floor:
		return fmt.Sprintf("only %d other server(s) would stay ready, under the capacity floor of %d (half the %d servers rounded up, or COUCHWATCH_MIN_READY): undrain another node first",
			readyOthers, floor, len(v.Nodes))
	}
	return ""
}

// serving: the node takes requests now (HAProxy's word in runtime mode, the verdict otherwise).
func serving(n nodeView) bool {
	if n.HAProxy.Reported {
		return n.HAProxy.Admin == "ready" && n.HAProxy.Op == "running" && (n.Verdict == "up" || n.Verdict == "degraded")
	}
	return n.Verdict == "up" || n.Verdict == "degraded"
}

func (c *cli) drain(ctx context.Context, args []string) int {
	var timeout time.Duration
	fs, ok := c.flags("drain", "[-addr host:port] [-timeout 10m] NODE", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the node's sessions to end")
	})
	if !ok || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	v, err := c.fetchStatus(ctx)
	if err != nil {
		fmt.Fprintln(c.stderr, "couchwatch drain:", err)
		return 1
	}
	target, err := findNode(v, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(c.stderr, "couchwatch drain:", err)
		return 1
	}
	if target.Verdict != "drain" {
		// HAProxy's state in the status is what it reported at the start of the last
		// pass: a node made ready a moment ago may not show yet. A refusal must hold
		// for a few passes.
		why := drainRefusal(v, target)
		for i := 0; i < 4 && why != ""; i++ {
			select {
			case <-ctx.Done():
				return 1
			case <-time.After(c.poll):
			}
			if v, err = c.fetchStatus(ctx); err != nil {
				fmt.Fprintln(c.stderr, "couchwatch drain:", err)
				return 1
			}
			if target, err = findNode(v, target.Node); err != nil {
				fmt.Fprintln(c.stderr, "couchwatch drain:", err)
				return 1
			}
			why = drainRefusal(v, target)
		}
		if why != "" {
			fmt.Fprintf(c.stderr, "couchwatch drain: refused: %s\n", why)
			return 1
		}
	}
	old, err := c.setMaintenance(ctx, target.Node, "nolb")
	if err != nil {
		fmt.Fprintln(c.stderr, "couchwatch drain:", err)
		return 1
	}
	fmt.Fprintf(c.stdout, "%s: [couchdb] maintenance_mode = nolb (was %s); waiting for HAProxy to report no sessions on %s\n", target.Node, old, orDash(target.Server))
	done := func(n nodeView) (bool, string) {
		if !n.HAProxy.Reported {
			// Agent mode: no HAProxy state to read; couchwatch's verdict is what the agent answers.
			return n.Verdict == "drain", "verdict " + n.Verdict + " (agent mode: HAProxy's sessions are not visible)"
		}
		return n.Verdict == "drain" && n.HAProxy.Admin != "ready" && n.HAProxy.Sessions == 0,
			fmt.Sprintf("verdict %s, HAProxy %s with %d sessions", n.Verdict, n.HAProxy.Admin, n.HAProxy.Sessions)
	}
	if !c.waitFor(ctx, target.Node, timeout, done) {
		fmt.Fprintf(c.stderr, "couchwatch drain: %s is in nolb but still has sessions after %s; it stays out of rotation and keeps serving its shards. "+
			"HAProxy ends them with: shutdown sessions server %s/%s\n", target.Node, timeout, v.Backend, target.Server)
		return 1
	}
	fmt.Fprintf(c.stdout, "%s drained: no sessions left on %s; undo with: couchwatch undrain %s\n", target.Node, orDash(target.Server), target.Node)
	return 0
}

func (c *cli) undrain(ctx context.Context, args []string) int {
	var timeout time.Duration
	fs, ok := c.flags("undrain", "[-addr host:port] [-timeout 2m] NODE", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the node to be back in rotation")
	})
	if !ok || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	v, err := c.fetchStatus(ctx)
	if err != nil {
		fmt.Fprintln(c.stderr, "couchwatch undrain:", err)
		return 1
	}
	target, err := findNode(v, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(c.stderr, "couchwatch undrain:", err)
		return 1
	}
	old, err := c.setMaintenance(ctx, target.Node, "false")
	if err != nil {
		fmt.Fprintln(c.stderr, "couchwatch undrain:", err)
		return 1
	}
	fmt.Fprintf(c.stdout, "%s: [couchdb] maintenance_mode = false (was %s); waiting for it to pass its checks and be ready\n", target.Node, old)
	done := func(n nodeView) (bool, string) {
		ok := n.Verdict == "up" || n.Verdict == "degraded"
		if n.HAProxy.Reported {
			ok = ok && n.HAProxy.Admin == "ready"
			return ok, fmt.Sprintf("verdict %s, HAProxy %s", n.Verdict, n.HAProxy.Admin)
		}
		return ok, "verdict " + n.Verdict
	}
	if !c.waitFor(ctx, target.Node, timeout, done) {
		fmt.Fprintf(c.stderr, "couchwatch undrain: %s is out of maintenance but not back in rotation after %s: see couchwatch status\n", target.Node, timeout)
		return 1
	}
	fmt.Fprintf(c.stdout, "%s is back in rotation\n", target.Node)
	return 0
}

// waitFor re-reads the status until done holds for node, printing each new state.
func (c *cli) waitFor(ctx context.Context, node string, timeout time.Duration, done func(nodeView) (bool, string)) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(c.poll)
	defer t.Stop()
	last := ""
	for {
		if v, err := c.fetchStatus(ctx); err == nil {
			if n, err := findNode(v, node); err == nil {
				ok, what := done(n)
				if what != last {
					fmt.Fprintf(c.stdout, "  %s\n", what)
					last = what
				}
				if ok {
					return true
				}
			}
		} else if ctx.Err() == nil {
			fmt.Fprintln(c.stderr, "  ", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// setMaintenance sets [couchdb] maintenance_mode on node through its _config, with the
// credentials couchwatch has (COUCHDB_USER / COUCHDB_PASSWORD or their _FILE variants).
func (c *cli) setMaintenance(ctx context.Context, node, value string) (string, error) {
	cfg, err := loadConfig(ctx, c.env)
	if err != nil {
		return "", fmt.Errorf("the environment does not hold a valid couchwatch configuration (run this inside the couchwatch container):\n%s", indent(err.Error()))
	}
	targets, err := couch.ParseServers(cfg.Servers)
	if err != nil {
		return "", fmt.Errorf("COUCHDB_SERVERS: %w", err)
	}
	for _, t := range targets {
		if t.Name != node {
			continue
		}
		n, err := couch.NewNode(t, couch.Options{User: cfg.User, Password: cfg.Password, Timeout: 10 * time.Second})
		if err != nil {
			return "", err
		}
		defer n.Close()
		old, err := n.SetConfigValue(ctx, "couchdb", "maintenance_mode", value)
		if err != nil {
			return "", fmt.Errorf("set maintenance_mode = %s on %s: %w", value, node, err)
		}
		if old == "" {
			old = "unset"
		}
		return old, nil
	}
	return "", errors.New("node " + node + " is not in COUCHDB_SERVERS here")
}
