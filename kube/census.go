package kube

import corev1 "k8s.io/api/core/v1"

// census counts the nodes this instance flags (from the freshest cache, after
// this pass's writes) into the flagged gauge, and returns those of them that
// host one of its hot CouchDB servers: the nodes rebalance may evict from.
func (c *Controller) census(nodes []*corev1.Node, byNode map[string][]string, servers map[string]serverState) map[string]bool {
	flagged := 0
	hot := map[string]bool{}
	for _, n := range nodes {
		cur, err := c.nodes.Get(n.Name)
		if err != nil {
			continue
		}
		if _, mine := c.cfg.marks(cur).Owners[c.instance]; !mine {
			continue
		}
		flagged++
		for _, s := range byNode[n.Name] {
			if servers[s].Hot {
				hot[n.Name] = true
			}
		}
	}
	c.m.flagged.Set(float64(flagged))
	return hot
}
