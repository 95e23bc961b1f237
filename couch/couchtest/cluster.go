// Package couchtest runs a simulated CouchDB 3.4.3 cluster on 127.0.0.1 for tests,
// benchmarks and demos, in the spirit of net/http/httptest.
//
// Each node is a real HTTP server on its own port that answers with the bodies and
// headers recorded from CouchDB 3.4.3 (couch/testdata, read through couch.Recorded), with
// node names adjusted to couchdbN@127.0.0.1, and enforces require_valid_user: everything
// but POST /_session needs Basic auth or a valid AuthSession cookie. Nodes can crash (Stop:
// connections reset, port refused), hang (Hang: TCP accepted, nothing answered, until
// Resume), fail (SetFault), slow down (SetLatency, SetLatencyPerInflight), enter maintenance
// (SetMaintenance), look loaded (SetLoad) and vanish from their peers' membership
// (Cluster.SetMissingFromPeers). Any other path is a "data request" answered with a
// small JSON body naming the node, so load can be sent through HAProxy.
package couchtest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults of Options.
const (
	DefaultUser        = "medic"
	DefaultPassword    = "password"
	DefaultNetTickTime = 60 * time.Second
)

// Options configure a Cluster.
type Options struct {
	User, Password string // the admin; default medic / password
	// Ports to listen on (one per node, on 127.0.0.1); empty = ephemeral ports.
	Ports []int
	// NetTickTime is how long a hung node stays in its peers' all_nodes
	// (Erlang's net_ticktime); 0 = DefaultNetTickTime. It also bounds how long calls
	// that need the hung node (cluster-wide /_active_tasks, the _users read of every
	// authenticated request) wait on the healthy nodes.
	NetTickTime time.Duration
	// UsersShardNode is the index of the node holding the shard of the admin's
	// org.couchdb.user doc in _users (n=1: one node); default 0, couchdb1. While it
	// hangs, every authenticated request on every node waits (see faithful.go).
	UsersShardNode int
	// AdminUserDoc: the admin also has a _users doc, which CouchDB caches, so no
	// request reads _users (the operator's way out of the auth coupling). Default
	// false: the admin is defined in config only, as CHT does.
	AdminUserDoc bool
	// IdleJSProcs is how many idle QuickJS processes a node keeps in os_proc_count
	// after a load; 0 = DefaultIdleJSProcs, negative = none.
	IdleJSProcs int
	// Seed seeds each node's load samples (run_queue spikes, latencies).
	Seed uint64
}

// Cluster is a set of simulated nodes that see each other.
type Cluster struct {
	opt   Options
	nodes []*Node
	sys   systemFixtures

	mu       sync.Mutex
	sessions map[string]bool   // valid AuthSession values (cluster-wide, like the shared secret)
	config   map[string]string // "section/key" -> value
	closed   bool
	dbs      []string // databases (shards.go); nil: CHT's
}

// Start runs n nodes named couchdb1@127.0.0.1 ... couchdbN@127.0.0.1.
func Start(n int, opt Options) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("couchtest: %d nodes: want at least 1", n)
	}
	if len(opt.Ports) != 0 && len(opt.Ports) != n {
		return nil, fmt.Errorf("couchtest: %d ports for %d nodes", len(opt.Ports), n)
	}
	if opt.User == "" {
		opt.User, opt.Password = DefaultUser, DefaultPassword
	}
	if opt.NetTickTime <= 0 {
		opt.NetTickTime = DefaultNetTickTime
	}
	switch {
	case opt.IdleJSProcs == 0:
		opt.IdleJSProcs = DefaultIdleJSProcs
	case opt.IdleJSProcs < 0:
		opt.IdleJSProcs = 0
	}
	sys, err := loadSystemFixtures()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		opt:      opt,
		sys:      sys,
		sessions: map[string]bool{},
		// As CHT runs CouchDB: n=1 q=12, require_valid_user, its os_process_limit.
		config: map[string]string{"cluster/n": "1", "cluster/q": "12", "chttpd/require_valid_user": "true",
			"query_server_config/os_process_limit": DefaultOSProcessLimit},
	}
	for i := range n {
		port := 0
		if len(opt.Ports) != 0 {
			port = opt.Ports[i]
		}
		node, err := newNode(c, i, port)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, node)
		if err := node.Start(); err != nil {
			c.Close()
			return nil, fmt.Errorf("couchtest: start %s: %w", node.name, err)
		}
	}
	return c, nil
}

// NewClusterT starts a cluster for a test or benchmark and closes it in t.Cleanup.
func NewClusterT(t testing.TB, n int, opt Options) *Cluster {
	t.Helper()
	c, err := Start(n, opt)
	if err != nil {
		t.Fatalf("couchtest: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Close stops every node for good.
func (c *Cluster) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	for _, n := range c.nodes {
		n.Stop()
	}
}

// Nodes returns the nodes; Nodes()[i] is couchdb<i+1>@127.0.0.1.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Targets returns "127.0.0.1:p1,127.0.0.1:p2,..." for COUCHDB_SERVERS.
func (c *Cluster) Targets() string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return strings.Join(addrs, ",")
}

// User and Password return the admin credentials the nodes accept.
func (c *Cluster) User() string     { return c.opt.User }
func (c *Cluster) Password() string { return c.opt.Password }

// SetMissingFromPeers removes node i (index into Nodes) from the other nodes'
// all_nodes, or puts it back.
func (c *Cluster) SetMissingFromPeers(i int, missing bool) {
	if i < 0 || i >= len(c.nodes) {
		return
	}
	n := c.nodes[i]
	n.mu.Lock()
	n.missing = missing
	n.mu.Unlock()
}

// SetConfig sets what GET /_node/_local/_config/<section>/<key> answers on every node
// (to begin with cluster/n "1", cluster/q "12", chttpd/require_valid_user "true",
// query_server_config/os_process_limit "1000", as CHT sets them; setting
// chttpd/require_valid_user_except_for_up "true" lets /_up answer without
// credentials). An empty value removes the key (404).
func (c *Cluster) SetConfig(section, key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if value == "" {
		delete(c.config, section+"/"+key)
		return
	}
	c.config[section+"/"+key] = value
}

// ExpireSessions forgets every AuthSession cookie, as a session timeout or a new
// secret would: the next cookie request gets 401.
func (c *Cluster) ExpireSessions() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.sessions)
}

func (c *Cluster) configValue(section, key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.config[section+"/"+key]
	return v, ok
}

func (c *Cluster) newSession() (string, error) {
	token, err := randomHex(16)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessions[token] = true
	return token, nil
}

func (c *Cluster) validSession(token string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[token]
}

func (c *Cluster) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// membership is what node self answers on /_membership.
func (c *Cluster) membership(self *Node, now time.Time) (all, members []string) {
	for _, n := range c.nodes {
		members = append(members, n.name)
		if n == self || n.visibleToPeers(now, c.opt.NetTickTime) {
			all = append(all, n.name)
		}
	}
	return all, members
}

func (c *Cluster) byName(name string) *Node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func nodeName(i int) string { return "couchdb" + strconv.Itoa(i+1) + "@127.0.0.1" }

// trackingListener registers every accepted connection with its node so Stop can
// reset them all, including idle ones that never sent a byte.
type trackingListener struct {
	net.Listener
	node *Node
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, node: l.node}
		if l.node.track(tc) {
			return tc, nil
		}
		// The node was stopped between accept and track: reset it like the rest.
		resetConn(c)
	}
}

type trackedConn struct {
	net.Conn
	node *Node
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.node.untrack(c) })
	return c.Conn.Close()
}

// resetConn closes c with SO_LINGER 0 so the peer gets a RST, as when a process dies
// with unread data or the kernel tears the socket down.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
