package couchtest

import (
	"net/http"
	"strings"
)

// routeMore answers the endpoints kept out of the core router: CouchDB's own
// Prometheus metrics (prometheus.go), the database list and shard maps (shards.go) and
// PUT of maintenance_mode (maintenance.go). It reports false for every other request.
func (n *Node) routeMore(w http.ResponseWriter, r *http.Request) (int, []byte, bool) {
	path := r.URL.Path
	switch {
	case path == "/_all_dbs":
		return n.allDBs(r)
	case strings.HasSuffix(path, "/_shards") && strings.Count(r.URL.EscapedPath(), "/") == 2:
		return n.shards(r, strings.TrimSuffix(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/_shards"))
	case n.ownNodePath(path, "_prometheus"):
		return n.prometheus(w, r)
	case r.Method == http.MethodPut && n.ownNodePath(path, "_config/couchdb/maintenance_mode"):
		return n.putMaintenance(r)
	}
	return 0, nil, false
}

// ownNodePath reports whether path is /_node/_local/<rest> or /_node/<own name>/<rest>.
func (n *Node) ownNodePath(path, rest string) bool {
	target, ok := strings.CutPrefix(path, "/_node/")
	if !ok {
		return false
	}
	name, tail, _ := strings.Cut(target, "/")
	return tail == rest && (name == "_local" || name == n.name)
}

func methodNotAllowed(allowed string) (int, []byte, bool) {
	return http.StatusMethodNotAllowed, []byte(`{"error":"method_not_allowed","reason":"Only ` + allowed + ` allowed"}` + "\n"), true
}
