package couch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
)

// AllDBs asks GET /_all_dbs?limit=limit (limit <= 0: no limit) and returns the names
// in CouchDB's (sorted) order.
func (n *Node) AllDBs(ctx context.Context, limit int) ([]string, error) {
	const op = "all_dbs"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	path := "/_all_dbs"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	body, err := n.getOK(ctx, op, path)
	if err != nil {
		return nil, err
	}
	dbs, err := ParseAllDBs(bytes.NewReader(body))
	if err != nil {
		return nil, n.fail(op, err)
	}
	return dbs, nil
}

// ParseAllDBs parses a /_all_dbs reply: a JSON array of names.
func ParseAllDBs(r io.Reader) ([]string, error) {
	var dbs []string
	if err := decodeStrict(r, &dbs); err != nil {
		return nil, malformed("all_dbs", err)
	}
	for _, db := range dbs {
		if db == "" {
			return nil, malformed("all_dbs", errors.New("empty database name"))
		}
	}
	return dbs, nil
}

// ShardMap is a database's shard ranges ("00000000-7fffffff") and the Erlang names of
// the nodes holding a copy of each.
type ShardMap map[string][]string

// Ranges returns the map's ranges, sorted.
func (m ShardMap) Ranges() []string {
	out := make([]string, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Shards asks GET /{db}/_shards. CouchDB answers it from the node's own copy of the
// shard map, so it works while other nodes are down.
func (n *Node) Shards(ctx context.Context, db string) (ShardMap, error) {
	const op = "shards"
	if db == "" {
		return nil, &Error{Op: op, Node: n.name, Reason: ReasonOther, Err: errors.New("empty database name")}
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	body, err := n.getOK(ctx, op, "/"+url.PathEscape(db)+"/_shards")
	if err != nil {
		return nil, err
	}
	m, err := ParseShards(bytes.NewReader(body))
	if err != nil {
		return nil, n.fail(op, err)
	}
	return m, nil
}

// ParseShards parses a /{db}/_shards reply: {"shards":{"range":["node",...],...}}.
func ParseShards(r io.Reader) (ShardMap, error) {
	var reply struct {
		Shards map[string][]string `json:"shards"`
	}
	dec := json.NewDecoder(r)
	if err := dec.Decode(&reply); err != nil {
		return nil, malformed("shards", err)
	}
	if reply.Shards == nil {
		return nil, malformed("shards", errors.New(`no "shards" object`))
	}
	for rng, nodes := range reply.Shards {
		if len(nodes) == 0 {
			return nil, malformed("shards", fmt.Errorf("range %q has no node", rng))
		}
	}
	return ShardMap(reply.Shards), nil
}
