package kube

import (
	"context"

	"k8s.io/apimachinery/pkg/labels"
)

// pass is one level-triggered reconciliation: observe, plan, ensure. Each
// concern lives in its own file: place (where each CouchDB runs), views (which
// nodes are this instance's), plan (pure), enforce (budgets, writes, Events),
// census (the gauge, rebalance's candidates), rebalance (evictions).
func (c *Controller) pass(ctx context.Context) {
	defer c.m.passes.Inc()
	c.mu.Lock()
	servers := c.track.snapshot(c.clk.Now())
	c.mu.Unlock()

	slices, err := c.slices.List(labels.Everything())
	if err != nil {
		c.log.Warn("list endpointslices from cache", "err", err)
		return
	}
	lookup := podLister{c.pods.Pods(c.ns)}
	pl := place(c.targets, slices, lookup, c.podSel)
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		c.log.Warn("list nodes from cache", "err", err)
		return
	}
	views, byName, couchHosts := c.views(nodes, pl.byNode)
	clears, keeps, sets := plan(views, servers, pl.unplaced)
	c.enforce(ctx, byName, couchHosts, clears, keeps, sets, pl.placed)
	if ctx.Err() != nil {
		return
	}
	hot := c.census(nodes, pl.byNode, servers)
	if c.cfg.Rebalance && len(hot) > 0 {
		if pods, err := lookup.List(labels.Everything()); err == nil {
			c.rebalance(ctx, evictCandidates(pods, c.evictSel, hot, pl.couchPods))
		}
	}
}
