package couchtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic/couchwatch/couch"
)

// Fault makes a node answer badly (every request but POST /_session).
type Fault int

// The faults a node can simulate.
const (
	FaultNone      Fault = iota
	Fault5xx             // 500 with a CouchDB error body
	FaultMalformed       // 200 with the JSON body cut in half
	FaultOversized       // 200 with a body of OversizedBody bytes
)

// OversizedBody is the size of a FaultOversized reply: over couch.DefaultMaxBody.
const OversizedBody = 4 << 20

func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case Fault5xx:
		return "5xx"
	case FaultMalformed:
		return "malformed"
	case FaultOversized:
		return "oversized"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// ParseFault is the inverse of Fault.String ("" is FaultNone).
func ParseFault(s string) (Fault, error) {
	for _, f := range []Fault{FaultNone, Fault5xx, FaultMalformed, FaultOversized} {
		if s == f.String() {
			return f, nil
		}
	}
	if s == "" {
		return FaultNone, nil
	}
	return FaultNone, fmt.Errorf("unknown fault %q (want none, 5xx, malformed or oversized)", s)
}

// Stats counts what a node saw since it was created.
type Stats struct {
	// Requests by path class.
	Up, Membership, System, ActiveTasks, Config, NodeInfo, Session, Data int64
	Logins                                                               int64 // successful POST /_session
	BasicAuth                                                            int64 // requests that carried an Authorization: Basic header
	Unauthorized                                                         int64 // 401 replies
	InFlight                                                             int64 // data requests being answered now
	Conns                                                                int64 // TCP connections accepted
}

type counters struct {
	up, membership, system, activeTasks, config, nodeInfo, session, data atomic.Int64
	logins, basicAuth, unauthorized, inFlight, conns                     atomic.Int64
	dataSeen                                                             atomic.Int64 // data requests counted by failData
}

// Node is one simulated CouchDB node.
type Node struct {
	c     *Cluster
	idx   int
	name  string
	stats counters

	mu        sync.Mutex
	port      int
	running   bool
	ln        net.Listener
	conns     map[*trackedConn]struct{}
	stopped   chan struct{} // closed by Stop
	hung      chan struct{} // non-nil while hung, closed by Resume
	hungSince time.Time
	missing   bool
	fault     Fault
	latency   time.Duration
	ramp      latencyRamp
	// dataFailEvery > 0 fails every nth data request (SetDataFailures).
	dataFailEvery int
	perInflight   time.Duration
	maintenance   string
	load          float64
	jsProcs       int // idle QuickJS processes kept since the last load
	rng           *mrand.Rand
	system        []byte
	activeTasks   []byte
}

func newNode(c *Cluster, idx, port int) (*Node, error) {
	n := &Node{c: c, idx: idx, name: nodeName(idx), port: port, conns: map[*trackedConn]struct{}{},
		rng: newRand(c.opt.Seed, idx)}
	sys, err := c.sys.render(0, n.idx)
	if err != nil {
		return nil, err
	}
	n.system = sys
	n.activeTasks = []byte("[]\n")
	return n, nil
}

// Addr returns "127.0.0.1:port".
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
}

// URL returns "http://127.0.0.1:port".
func (n *Node) URL() string { return "http://" + n.Addr() }

// ErlangName returns couchdbN@127.0.0.1.
func (n *Node) ErlangName() string { return n.name }

// Running reports whether the node is started (hung or not).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running
}

// Hung reports whether the node is hung.
func (n *Node) Hung() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hung != nil
}

// Start listens again on the node's port (the first Start picks it when ephemeral).
// Starting a running node does nothing. A restarted node is not hung.
func (n *Node) Start() error {
	if n.c.isClosed() {
		return errors.New("couchtest: cluster closed")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	n.port = ln.Addr().(*net.TCPAddr).Port
	n.ln = ln
	n.running = true
	n.stopped = make(chan struct{})
	n.jsProcs = 0 // a restarted node has no query-server processes yet
	if n.hung != nil {
		close(n.hung)
		n.hung = nil
	}
	srv := &http.Server{
		Handler:           n,
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          nil,
	}
	go func() { _ = srv.Serve(&trackingListener{Listener: ln, node: n}) }()
	return nil
}

// Stop crashes the node: the listener closes and every open connection is reset
// (SO_LINGER 0), so clients see a reset at once and then connection refused.
func (n *Node) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return
	}
	n.running = false
	_ = n.ln.Close()
	for c := range n.conns {
		resetConn(c.Conn)
		delete(n.conns, c)
	}
	close(n.stopped)
}

// Hang makes the node accept TCP connections but answer nothing, like a SIGSTOPped
// CouchDB; requests already in progress stall before they answer.
func (n *Node) Hang() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hung == nil {
		n.hung = make(chan struct{})
		n.hungSince = time.Now()
	}
}

// Resume ends a Hang: stalled requests complete normally (like SIGCONT).
func (n *Node) Resume() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hung != nil {
		close(n.hung)
		n.hung = nil
	}
}

// SetFault sets how the node misbehaves.
func (n *Node) SetFault(f Fault) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fault = f
}

// SetLatency delays every reply by d.
func (n *Node) SetLatency(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.latency = d
}

// SetLatencyPerInflight delays data requests by d for every data request in flight
// (including itself) when it arrives: a saturated node.
func (n *Node) SetLatencyPerInflight(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.perInflight = d
}

// SetMaintenance sets [couchdb] maintenance_mode: "" (off), "true" or "nolb". /_up
// then answers 404 {"status":"maintenance_mode"} or {"status":"nolb"}.
func (n *Node) SetMaintenance(mode string) error {
	switch mode {
	case "", "false", "true", "nolb":
	default:
		return fmt.Errorf("maintenance mode %q: want \"\", true or nolb", mode)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.maintenance = mode
	return nil
}

// Maintenance returns the [couchdb] maintenance_mode set by SetMaintenance ("" when off).
func (n *Node) Maintenance() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.maintenance == "false" {
		return ""
	}
	return n.maintenance
}

// SetLoad sets how loaded the node looks, from 0 (system_idle.json) to 1
// (system_under_load.json: busy couch_file queues); values in between are interpolated
// and out-of-range levels are clamped. As on a real loaded node, each _system reply
// draws its run_queue from the measured spiky distribution (median ~1, p90 ~30, max
// ~110 at level 1, scaled by the level) and takes 100-700 ms, /_up takes 5-40 ms (both
// scaled by the level), and a load leaves Options.IdleJSProcs idle QuickJS processes in
// os_proc_count until the node restarts.
func (n *Node) SetLoad(level float64) {
	level = min(max(level, 0), 1)
	body, err := n.c.sys.render(level, n.idx)
	if err != nil {
		return // the fixtures were checked at Start; render cannot fail on them
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.load = level
	n.system = body
	if level > 0 {
		n.jsProcs = max(n.jsProcs, n.c.opt.IdleJSProcs)
	}
}

// Load returns the level set by SetLoad.
func (n *Node) Load() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.load
}

// SetActiveTasks sets the node's own tasks to one of the recorded replies: "idle"
// (none), "view_build", "db_compaction" or "replication", each task's "node" being
// this node. /_active_tasks is cluster-wide, as in CouchDB: every node lists every
// reachable node's tasks.
func (n *Node) SetActiveTasks(name string) error {
	body, err := couch.Recorded("active_tasks_" + name + ".json")
	if err != nil {
		return fmt.Errorf("active tasks %q: want idle, view_build, db_compaction or replication", name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.activeTasks = renameNodes(body, n.idx)
	return nil
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	s := &n.stats
	return Stats{
		Up: s.up.Load(), Membership: s.membership.Load(), System: s.system.Load(),
		ActiveTasks: s.activeTasks.Load(), Config: s.config.Load(), NodeInfo: s.nodeInfo.Load(),
		Session: s.session.Load(), Data: s.data.Load(),
		Logins: s.logins.Load(), BasicAuth: s.basicAuth.Load(), Unauthorized: s.unauthorized.Load(),
		InFlight: s.inFlight.Load(), Conns: s.conns.Load(),
	}
}

// Status is a snapshot of a node's settings, for status pages.
type Status struct {
	Name        string
	Addr        string
	Running     bool
	Hung        bool
	Missing     bool
	Fault       Fault
	Latency     time.Duration
	PerInflight time.Duration
	Maintenance string
	Load        float64
}

// Status returns the node's current settings.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Status{
		Name: n.name, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)),
		Running: n.running, Hung: n.hung != nil, Missing: n.missing, Fault: n.fault,
		Latency: n.latency, PerInflight: n.perInflight, Maintenance: n.maintenance, Load: n.load,
	}
}

func (n *Node) track(c *trackedConn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return false
	}
	n.conns[c] = struct{}{}
	n.stats.conns.Add(1)
	return true
}

func (n *Node) untrack(c *trackedConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, c)
}

// visibleToPeers reports whether the node is in its peers' all_nodes: running, not
// marked missing, and not hung for longer than net_ticktime.
func (n *Node) visibleToPeers(now time.Time, tick time.Duration) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running && !n.missing && (n.hung == nil || now.Sub(n.hungSince) < tick)
}

// gate blocks while the node is hung. It returns false when the request should be
// dropped (node stopped, client gone).
func (n *Node) gate(ctx context.Context) bool {
	for {
		n.mu.Lock()
		hung, stopped, running := n.hung, n.stopped, n.running
		n.mu.Unlock()
		if !running {
			return false
		}
		if hung == nil {
			return true
		}
		select {
		case <-hung:
		case <-stopped:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// sleep waits d unless the node stops or the client leaves first.
func (n *Node) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	n.mu.Lock()
	stopped := n.stopped
	n.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stopped:
		return false
	case <-ctx.Done():
		return false
	}
}

type settings struct {
	fault       Fault
	latency     time.Duration
	perInflight time.Duration
	maintenance string
	load        float64
	jsProcs     int
	system      []byte
	activeTasks []byte
}

func (n *Node) settings() settings {
	n.mu.Lock()
	defer n.mu.Unlock()
	return settings{n.fault, n.latency + n.ramp.at(time.Now()), n.perInflight, n.maintenance, n.load, n.jsProcs, n.system, n.activeTasks}
}

func randomHex(nbytes int) (string, error) {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// OpenConns returns the number of open client connections (held ones included).
func (n *Node) OpenConns() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}
