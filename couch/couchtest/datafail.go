package couchtest

// SetDataFailures makes every nth data request (any path that is not a CouchDB
// endpoint couchwatch probes: /medic, ...) answer 500 with CouchDB's error body, while
// /_up and the other endpoints keep answering: a node that looks healthy to a prober
// but fails real traffic. n = 2 fails half of them; n <= 0 ends it.
func (n *Node) SetDataFailures(every int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dataFailEvery = max(every, 0)
}

// failData reports whether this data request is one to fail.
func (n *Node) failData() bool {
	n.mu.Lock()
	every := n.dataFailEvery
	n.mu.Unlock()
	return every > 0 && n.stats.dataSeen.Add(1)%int64(every) == 0
}
