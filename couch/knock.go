package couch

import (
	"context"
	"io"
	"net/http"
)

// Knock asks GET /_up without credentials, on a new connection, and returns the
// HTTP status. Any answer (401 under require_valid_user, 200 with
// require_valid_user_except_for_up) proves the node's HTTP layer lives: when
// authenticated calls time out but Knock answers at once, the node's authentication is
// what waits, for a hung peer that holds the admin's _users shard (DESIGN.md §5). It is
// rare (only after an authenticated probe timed out), so it keeps no connection.
func (n *Node) Knock(ctx context.Context) (int, error) {
	const op = "knock"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base.String()+"/_up", nil)
	if err != nil {
		return 0, n.fail(op, err)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := n.anon.RoundTrip(req)
	if err != nil {
		return 0, n.fail(op, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, nil
}
