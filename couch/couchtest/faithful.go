package couchtest

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file holds the behaviours measured on a real 3-node CouchDB 3.4.3 cluster (q=12,
// n=1, require_valid_user, admin defined in config only, as CHT runs it) that the
// simulator reproduces by default (DESIGN.md §5):
//
//   - /_active_tasks is cluster-wide: every node lists every node's tasks, each with
//     the "node" of the node running it; while a peer hangs (until net_ticktime) the call
//     blocks on every node.
//   - The auth coupling: every authenticated request reads org.couchdb.user:<admin>
//     from _users, whose one shard lives on one node (Options.UsersShardNode); a
//     missing doc is never cached. While that node hangs (until net_ticktime), every
//     authenticated request on every node waits; unauthenticated ones still get 401 at
//     once. A stopped node does not do this (nodedown is immediate).
//   - Under load, run_queue is spiky (median ~1, p90 ~30, max ~110), _system takes
//     100-700 ms while /_up stays at 5-40 ms.
//   - Idle QuickJS processes stay in os_proc_count after a load (25-40).
//   - maintenance_mode = true makes the node's shards unavailable to the cluster:
//     document reads of its shards answer 500 read_failure on every node.

// Defaults of the faithful behaviours.
const (
	// DefaultIdleJSProcs is how many idle QuickJS processes a node keeps after a load
	// (25-40 were seen for minutes; CouchDB keeps them below os_process_soft_limit).
	DefaultIdleJSProcs = 32
	// DefaultOSProcessLimit is CHT's [query_server_config] os_process_limit
	// (couchdb/10-docker-default.ini).
	DefaultOSProcessLimit = "1000"
)

// runQueueQuantiles is the run_queue distribution of a loaded node in 0.5 s samples
// (median ~1, p75 ~5, p90 ~30, p99 ~80, max ~110), as quantile points interpolated
// linearly; a node at load level l draws from it scaled by l.
var runQueueQuantiles = [...]struct{ q, v float64 }{
	{0, 0}, {0.5, 1}, {0.75, 5}, {0.9, 30}, {0.99, 80}, {1, 110},
}

// runQueueAt returns the run_queue at quantile u (0..1) of the loaded distribution.
func runQueueAt(u float64) float64 {
	p := runQueueQuantiles
	for i := 1; i < len(p); i++ {
		if u <= p[i].q {
			return p[i-1].v + (p[i].v-p[i-1].v)*(u-p[i-1].q)/(p[i].q-p[i-1].q)
		}
	}
	return p[len(p)-1].v
}

// Latencies of a node at full load, scaled by the load level.
const (
	systemLatencyMin, systemLatencyMax = 100 * time.Millisecond, 700 * time.Millisecond
	upLatencyMin, upLatencyMax         = 5 * time.Millisecond, 40 * time.Millisecond
)

// sample is what one _system request of the node sees: run_queue drawn from the
// loaded distribution, and how long the reply takes.
func (n *Node) loadSample(level float64, lo, hi time.Duration) (runQueue int64, delay time.Duration) {
	if level <= 0 {
		return 0, 0
	}
	n.mu.Lock()
	u, v := n.rng.Float64(), n.rng.Float64()
	n.mu.Unlock()
	runQueue = int64(math.Round(runQueueAt(u) * level))
	delay = time.Duration(level * (float64(lo) + v*float64(hi-lo)))
	return runQueue, delay
}

// systemBody renders the node's _system reply for one request: the recorded body at
// the load level, with the sampled run_queue and the node's JavaScript processes.
func (n *Node) systemBody(set settings) ([]byte, time.Duration) {
	rq, delay := n.loadSample(set.load, systemLatencyMin, systemLatencyMax)
	if set.load <= 0 && set.jsProcs == 0 {
		return set.system, 0
	}
	m, err := decodeObject(set.system)
	if err != nil {
		return set.system, delay
	}
	m["run_queue"] = json.Number(itoa64(rq))
	m["os_proc_count"] = json.Number(itoa64(int64(set.jsProcs)))
	b, err := json.Marshal(m)
	if err != nil {
		return set.system, delay
	}
	return append(b, '\n'), delay
}

// upDelay is the extra /_up latency of a loaded node (5-40 ms at full load).
func (n *Node) upDelay(level float64) time.Duration {
	_, d := n.loadSample(level, upLatencyMin, upLatencyMax)
	return d
}

// waitPeerTick blocks while peer is hung and its peers have not yet given up on it
// (net_ticktime). It returns false when ctx ended or n stopped first.
func (n *Node) waitPeerTick(ctx context.Context, peer *Node) bool {
	for {
		peer.mu.Lock()
		hung, since, running := peer.hung, peer.hungSince, peer.running
		peer.mu.Unlock()
		if hung == nil || !running {
			return true // answering, or stopped (nodedown is immediate)
		}
		left := n.c.opt.NetTickTime - time.Since(since)
		if left <= 0 {
			return true // nodedown now: the call goes on without it
		}
		n.mu.Lock()
		stopped := n.stopped
		n.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-hung:
		case <-t.C:
		case <-stopped:
			t.Stop()
			return false
		case <-ctx.Done():
			t.Stop()
			return false
		}
		t.Stop()
	}
}

// waitUsersShard is the auth coupling: an authenticated request reads the admin's
// _users doc from the node that holds its shard, and waits while that node hangs.
func (n *Node) waitUsersShard(ctx context.Context) bool {
	if n.c.opt.AdminUserDoc {
		return true // an existing doc is cached: no read per request
	}
	shard := n.c.UsersShardNode()
	if shard == nil || shard == n || shard.Maintenance() == "true" {
		// Its own shard: a hung node answers nothing anyway. In maintenance_mode =
		// true the read fails at once and the config admin is used.
		return true
	}
	return n.waitPeerTick(ctx, shard)
}

// credentialed reports whether a request carries credentials CouchDB checks (Basic, an
// AuthSession cookie, or a login).
func credentialed(r *http.Request, class int) bool {
	if class == classSession && r.Method == http.MethodPost {
		return true
	}
	if _, _, ok := r.BasicAuth(); ok {
		return true
	}
	_, err := r.Cookie("AuthSession")
	return err == nil
}

// activeTasks is /_active_tasks as the cluster answers it on node n: every reachable
// node's own tasks; a hung peer blocks the call until net_ticktime.
func (n *Node) clusterTasks(ctx context.Context) ([]byte, bool) {
	var all []json.RawMessage
	for _, peer := range n.c.nodes {
		if peer != n {
			if !peer.Running() || peer.isMissing() {
				continue // nodedown: left out at once
			}
			if !n.waitPeerTick(ctx, peer) {
				return nil, false
			}
			if peer.Hung() {
				continue // gave up on it after net_ticktime
			}
		}
		var tasks []json.RawMessage
		if err := json.Unmarshal(peer.settings().activeTasks, &tasks); err == nil {
			all = append(all, tasks...)
		}
	}
	if len(all) == 0 {
		return []byte("[]\n"), true
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, t := range all {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(t)
	}
	b.WriteString("]\n")
	return b.Bytes(), true
}

func (n *Node) isMissing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.missing
}

// docShard returns the node holding the shard of a document request (/db/docid), or
// nil for any other request. With n=1 each document lives on one node.
func (c *Cluster) docShard(path string) *Node {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" || strings.HasPrefix(parts[0], "_") || strings.HasPrefix(parts[1], "_") {
		return nil
	}
	return c.nodes[int(crc32.ChecksumIEEE([]byte(parts[0]+"/"+parts[1])))%len(c.nodes)]
}

// DocShardNode returns the node holding the shard of document db/id: reads of it fail
// with 500 read_failure on every node while that node is in maintenance_mode = true.
func (c *Cluster) DocShardNode(db, id string) *Node { return c.docShard("/" + db + "/" + id) }

// UsersShardNode returns the node holding the shard of the admin's _users doc
// (Options.UsersShardNode), or nil when there is none (AdminUserDoc: it is cached).
func (c *Cluster) UsersShardNode() *Node {
	if c.opt.AdminUserDoc || c.opt.UsersShardNode < 0 || c.opt.UsersShardNode >= len(c.nodes) {
		return nil
	}
	return c.nodes[c.opt.UsersShardNode]
}

func newRand(seed uint64, idx int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(idx)+1))
}

func itoa64(v int64) string { return strconv.FormatInt(v, 10) }
