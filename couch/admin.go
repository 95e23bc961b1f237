package couch

import (
	"context"
	"errors"
)

// SetConfigValue sets [section] key = value on the node itself
// (PUT /_node/_local/_config/<section>/<key>, through kivik) and returns the value it
// replaces. couchwatch uses it for one thing: `couchwatch drain`, which sets
// [couchdb] maintenance_mode = nolb, the way the README takes a node out by hand.
func (n *Node) SetConfigValue(ctx context.Context, section, key, value string) (string, error) {
	const op = "set_config"
	if section == "" || key == "" {
		return "", &Error{Op: op, Node: n.name, Reason: ReasonOther, Err: errors.New("empty section or key")}
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	old, err := n.kivik.SetConfigValue(ctx, "_local", section, key, value)
	if err != nil {
		return "", n.fail(op, err)
	}
	return old, nil
}

// Prometheus asks GET /_node/_local/_prometheus (CouchDB 3.2+) and returns the raw
// text exposition (capped at the node's body limit): the caller parses it.
func (n *Node) Prometheus(ctx context.Context) ([]byte, error) {
	const op = "prometheus"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	return n.getOK(ctx, op, "/_node/_local/_prometheus")
}
