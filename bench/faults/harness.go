package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

const backend = haproxytest.DefaultBackend

// rig is a 3-node simulated cluster behind a real HAProxy, and couchwatch steering it.
type rig struct {
	cluster *couchtest.Cluster
	hap     *haproxytest.Proc
	cw      *benchkit.Couchwatch
	names   []string
}

// tuning is the couchwatch environment every scenario shares: probes fast enough for
// a short bench, the same for before and after (variables the old binary does not
// know are ignored by it).
func tuning() map[string]string {
	return map[string]string{
		"COUCHWATCH_PROBE_INTERVAL": "100ms", "COUCHWATCH_PROBE_TIMEOUT": "200ms", "COUCHWATCH_PROBE_FAST_INTERVAL": "30ms",
		"COUCHWATCH_RISE": "2", "COUCHWATCH_FALL": "2", "COUCHWATCH_RECONCILE_INTERVAL": "250ms",
		"COUCHWATCH_SYSTEM_INTERVAL": "200ms", "COUCHWATCH_SYSTEM_TIMEOUT": "1s", "COUCHWATCH_MEMBERSHIP_INTERVAL": "1s",
		"COUCHWATCH_LOAD_SUSTAIN": "500ms", "COUCHWATCH_LOAD_COOLDOWN": "500ms", "COUCHWATCH_SLOWSTART": "0s",
		"COUCHWATCH_WEIGHT_STEP": "100", "COUCHWATCH_LOG_LEVEL": "info",
		"COUCHWATCH_FLAP_HOLD": "1s", "COUCHWATCH_FLAP_HOLD_MAX": "30s",
	}
}

type rigOpts struct {
	haproxy func(*haproxytest.Options)
	before  func(*rig) error // after the cluster and HAProxy start, before couchwatch
	socket  string           // COUCHWATCH_HAPROXY_SOCKET instead of HAProxy's own
	env     map[string]string
}

func startRig(ctx context.Context, bin string, o rigOpts) (*rig, error) {
	c, err := couchtest.Start(3, couchtest.Options{NetTickTime: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	r := &rig{cluster: c, names: []string{"couchdb-1", "couchdb-2", "couchdb-3"}}
	hopt := haproxytest.Options{Timeouts: []string{"timeout connect 25m", "timeout client 100h", "timeout server 100h", "timeout check 1s"},
		BackendExtra: []string{"retries 5", "option redispatch"}}
	var addrs []string
	for i, n := range c.Nodes() {
		hopt.Servers = append(hopt.Servers, haproxytest.ServerSpec{Name: r.names[i], Addr: n.Addr()})
		addrs = append(addrs, n.Addr())
	}
	if o.haproxy != nil {
		o.haproxy(&hopt)
	}
	if r.hap, err = haproxytest.Start(hopt); err != nil {
		c.Close()
		return nil, err
	}
	if o.before != nil {
		if err := o.before(r); err != nil {
			r.close()
			return nil, err
		}
	}
	env := tuning()
	for k, v := range o.env {
		env[k] = v
	}
	var m []string
	for i, a := range addrs {
		m = append(m, a+"="+r.names[i])
	}
	env["COUCHWATCH_SERVER_MAP"] = strings.Join(m, ",")
	sock := o.socket
	if sock == "" {
		sock = r.hap.Socket()
	}
	r.cw, err = benchkit.StartCouchwatch(ctx, bin, benchkit.CouchwatchEnv{Servers: strings.Join(addrs, ","),
		User: c.User(), Password: c.Password(), Socket: sock, Tuning: env}, 20*time.Second)
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *rig) close() {
	if r.cw != nil {
		_ = r.cw.Stop()
	}
	_ = r.hap.Close()
	r.cluster.Close()
}

func (r *rig) node(i int) *couchtest.Node { return r.cluster.Nodes()[i-1] }

var sentCmd = regexp.MustCompile(`msg="haproxy command" .*cmd="([^"]+)"`)

// sent lists the commands couchwatch logged as accepted, after output offset from.
func (r *rig) sent(from int) []string {
	var out []string
	for _, l := range strings.Split(r.cw.Output()[from:], "\n") {
		if m := sentCmd.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

func count(cmds []string, substr string) int {
	n := 0
	for _, c := range cmds {
		if strings.Contains(c, substr) {
			n++
		}
	}
	return n
}

// states reads HAProxy's servers (benchkit's fast reader).
func (r *rig) states() (map[string]benchkit.ServerState, error) {
	return benchkit.ReadStates(r.hap.Socket(), backend)
}

// settled waits d for couchwatch to act, then reads HAProxy's servers and counts those
// in rotation.
func (r *rig) settled(ctx context.Context, d time.Duration) (map[string]benchkit.ServerState, int, error) {
	if err := benchkit.Sleep(ctx, d); err != nil {
		return nil, 0, err
	}
	st, err := r.states()
	if err != nil {
		return nil, 0, err
	}
	in := 0
	for _, s := range st {
		if s.InRotation() {
			in++
		}
	}
	return st, in, nil
}

// waitState polls HAProxy every 2 ms until cond holds for server; it returns how long.
func (r *rig) waitState(ctx context.Context, server string, cond func(benchkit.ServerState) bool, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := benchkit.WaitFor(ctx, timeout, 2*time.Millisecond, func() (bool, error) {
		st, err := r.states()
		return err == nil && cond(st[server]), nil
	})
	if err != nil {
		return time.Since(start), fmt.Errorf("%s: %w", server, err)
	}
	return time.Since(start), nil
}

func (r *rig) metric(ctx context.Context, name string, labels map[string]string) float64 {
	m, err := r.cw.Metrics(ctx)
	if err != nil {
		return -1
	}
	return m.Sum(name, labels)
}

func inMaint(s benchkit.ServerState) bool { return s.Admin&1 != 0 }
func ready(s benchkit.ServerState) bool   { return s.Admin == 0 }
