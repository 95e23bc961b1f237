package couchtest

// StopAll crashes every running node at one instant, as far as a client can tell:
// every listener is closed before any connection is reset, with no request served in
// between (Stop called in turn leaves gaps of milliseconds on a busy machine, in which a
// prober may rightly hear from the nodes not yet stopped).
func (c *Cluster) StopAll() {
	nodes := c.Nodes()
	for _, n := range nodes {
		n.mu.Lock()
	}
	var stopped []*Node
	for _, n := range nodes {
		if n.running {
			n.running = false
			_ = n.ln.Close()
			stopped = append(stopped, n)
		}
	}
	for _, n := range stopped {
		for cn := range n.conns {
			resetConn(cn.Conn)
			delete(n.conns, cn)
		}
		close(n.stopped)
	}
	for _, n := range nodes {
		n.mu.Unlock()
	}
}
