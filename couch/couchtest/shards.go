package couchtest

import (
	"fmt"
	"hash/crc32"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// DefaultDatabases are the databases a CHT instance has (what /_all_dbs lists until
// SetDatabases says otherwise), in CouchDB's sorted order.
var DefaultDatabases = []string{"_replicator", "_users", "medic", "medic-audit", "medic-logs",
	"medic-sentinel", "medic-users-meta"}

// SetDatabases sets the databases /_all_dbs lists and /{db}/_shards knows; nil restores
// DefaultDatabases.
func (c *Cluster) SetDatabases(names ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dbs = slices.Clone(names)
	slices.Sort(c.dbs)
}

func (c *Cluster) databases() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dbs == nil {
		return DefaultDatabases
	}
	return c.dbs
}

// allDBs answers GET /_all_dbs (sorted names; limit and skip honoured like CouchDB).
func (n *Node) allDBs(r *http.Request) (int, []byte, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed("GET,HEAD")
	}
	dbs := n.c.databases()
	q := r.URL.Query()
	if s := q.Get("skip"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k < 0 {
			return badRequest("Invalid value for skip")
		}
		dbs = dbs[min(k, len(dbs)):]
	}
	if s := q.Get("limit"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k < 0 {
			return badRequest("Invalid value for limit")
		}
		dbs = dbs[:min(k, len(dbs))]
	}
	return http.StatusOK, mustJSON(dbs), true
}

func badRequest(reason string) (int, []byte, bool) {
	return http.StatusBadRequest, mustJSON(map[string]string{"error": "query_parse_error", "reason": reason}), true
}

// shards answers GET /{db}/_shards like CouchDB: {"shards":{"<range>":[nodes]}}, q
// ranges ([cluster] q) of n copies ([cluster] n, capped by the node count). Ranges
// are cut like mem3 (increment 2^32/q, the last range ends at ffffffff); copies are
// placed round-robin from an offset derived from the database name, a simplification
// of mem3's placement that spreads databases over the nodes as CouchDB does.
func (n *Node) shards(r *http.Request, escaped string) (int, []byte, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed("GET,HEAD")
	}
	db, err := url.PathUnescape(escaped)
	if err != nil || !slices.Contains(n.c.databases(), db) {
		return http.StatusNotFound, []byte(`{"error":"not_found","reason":"Database does not exist."}` + "\n"), true
	}
	q, copies := n.c.intConfig("cluster", "q", 2), n.c.intConfig("cluster", "n", 3)
	copies = min(max(copies, 1), len(n.c.nodes))
	off := int(crc32.ChecksumIEEE([]byte(db)) % uint32(len(n.c.nodes)))
	out := map[string][]string{}
	for i, rng := range shardRanges(q) {
		var holders []string
		for k := range copies {
			holders = append(holders, n.c.nodes[(off+i+k)%len(n.c.nodes)].name)
		}
		slices.Sort(holders)
		out[rng] = holders
	}
	return http.StatusOK, mustJSON(map[string]any{"shards": out}), true
}

// shardRanges cuts the 32-bit hash ring into q ranges the way mem3_util does.
func shardRanges(q int) []string {
	const top = uint64(1) << 32
	q = max(q, 1)
	inc := top / uint64(q)
	var out []string
	for start := uint64(0); start < top; {
		end := start + inc - 1
		if start+2*inc > top {
			end = top - 1
		}
		out = append(out, fmt.Sprintf("%08x-%08x", start, end))
		start = end + 1
	}
	return out
}

func (c *Cluster) intConfig(section, key string, def int) int {
	v, ok := c.configValue(section, key)
	if !ok {
		return def
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 1 {
		return def
	}
	return i
}
