package main

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/medic/couchwatch/couch"
)

// hostCache holds the addresses of the COUCHDB_SERVERS host names, resolved in the
// background (refresh) so that mapping nodes to servers by address does no I/O on the
// reconcile path and never holds the Reconciler's lock across a DNS lookup.
type hostCache struct {
	lookup func(ctx context.Context, host string) ([]string, error)
	hosts  []string

	mu    sync.Mutex
	addrs map[string][]string
}

func newHostCache(targets []couch.Target, lookup func(ctx context.Context, host string) ([]string, error)) *hostCache {
	c := &hostCache{lookup: lookup, addrs: map[string][]string{}}
	for _, t := range targets {
		if h := t.URL.Hostname(); net.ParseIP(h) == nil && !slices.Contains(c.hosts, h) {
			c.hosts = append(c.hosts, h)
		}
	}
	return c
}

// Addrs returns host's addresses: the host itself when it is an IP, else what the last
// refresh found (nil before the first answer). It never blocks on the network.
func (c *hostCache) Addrs(host string) []string {
	if ip := net.ParseIP(host); ip != nil {
		return []string{ip.String()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[host]
}

// refresh resolves every host once, each with its own deadline; a failed lookup keeps
// the addresses last known.
func (c *hostCache) refresh(ctx context.Context) {
	for _, h := range c.hosts {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		addrs, err := c.lookup(lctx, h)
		cancel()
		if err != nil {
			continue
		}
		c.mu.Lock()
		c.addrs[h] = addrs
		c.mu.Unlock()
	}
}

// run refreshes every interval until ctx ends (the first refresh is the caller's).
func (c *hostCache) run(ctx context.Context, interval time.Duration) {
	if len(c.hosts) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.refresh(ctx)
	}
}
