package kube

import corev1 "k8s.io/api/core/v1"

// views is what the planner sees of the nodes: every node this instance has
// flagged, and every node hosting one of its CouchDB servers. byName indexes
// the nodes; couchHosts counts the nodes that exist and host one of its servers.
//
// A node is this instance's flag when it carries the instance's owner label.
// A flag from before owner labels (shared marks, no owner at all) is adopted
// by the instance whose server the taint names, or which has a CouchDB on the
// node. A flag owned by other instances only is never this instance's business:
// it neither clears it nor counts it.
func (c *Controller) views(nodes []*corev1.Node, byNode map[string][]string) (views []nodeView, byName map[string]*corev1.Node, couchHosts int) {
	byName = make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
		mk := c.cfg.marks(n)
		v := nodeView{Name: n.Name, Servers: byNode[n.Name]}
		if value, mine := mk.Owners[c.instance]; mine {
			v.Flagged, v.TaintFor = true, c.serverFor(value)
		} else if len(mk.Owners) == 0 && mk.flagged() {
			if mk.Taint != nil {
				v.TaintFor = c.serverFor(mk.Taint.Value)
			}
			v.Flagged = v.TaintFor != "" || len(v.Servers) > 0
		}
		if d, ok := c.dry[n.Name]; ok {
			v.Flagged = d
		}
		if v.Flagged || len(v.Servers) > 0 {
			views = append(views, v)
		}
		if len(v.Servers) > 0 {
			couchHosts++
		}
	}
	return views, byName, couchHosts
}
