package main

import (
	"context"
	"fmt"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// idleRow is one process's resource use over the idle window.
type idleRow struct {
	Name    string
	Usage   benchkit.Usage
	ReqRate float64 // requests per second the process sent to the CouchDB nodes
}

// measureIdle runs, side by side for the same window, couchwatch at its defaults
// steering a HAProxy without checks (3 idle nodes), and a second HAProxy running the
// tuned httpchk against its own 3 idle nodes: the cost of each way of checking.
func (b *bench) measureIdle(ctx context.Context) ([]idleRow, error) {
	cw := methodByKey("cw-default")
	e, err := b.setup(ctx, cw)
	if err != nil {
		return nil, err
	}
	defer e.close()
	tuned := methodByKey(tunedKey)
	cluster2, err := couchtest.Start(nodes, couchtest.Options{})
	if err != nil {
		return nil, err
	}
	defer cluster2.Close()
	var specs []haproxytest.ServerSpec
	for i, n := range cluster2.Nodes() {
		specs = append(specs, haproxytest.ServerSpec{Name: serverName(i), Addr: n.Addr()})
	}
	hap2, err := haproxytest.Start(tuned.haproxyOptions(specs, cluster2.User(), cluster2.Password(), 0))
	if err != nil {
		return nil, err
	}
	defer hap2.Close()

	hapPid, err := benchkit.HAProxyWorkerPid(e.hap.Socket())
	if err != nil {
		return nil, err
	}
	hap2Pid, err := benchkit.HAProxyWorkerPid(hap2.Socket())
	if err != nil {
		return nil, err
	}
	// Let start-up work (first passes, sessions, first samples) settle.
	if err := benchkit.Sleep(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	pids := []int{e.cw.Pid(), hapPid, hap2Pid}
	before := make([]benchkit.ProcSample, len(pids))
	for i, pid := range pids {
		if before[i], err = benchkit.ReadProc(pid); err != nil {
			return nil, err
		}
	}
	req1, req2 := requests(e.cluster), requests(cluster2)
	if err := benchkit.Sleep(ctx, b.cfg.Idle); err != nil {
		return nil, err
	}
	rows := []idleRow{
		{Name: "couchwatch (defaults, runtime API, 3 nodes)"},
		{Name: "HAProxy worker steered by couchwatch (no checks)"},
		{Name: "HAProxy worker running the tuned httpchk (3 servers)"},
	}
	for i, pid := range pids {
		after, err := benchkit.ReadProc(pid)
		if err != nil {
			return nil, err
		}
		rows[i].Usage = benchkit.UsageBetween(before[i], after)
	}
	w := rows[0].Usage.Window.Seconds()
	rows[0].ReqRate = float64(requests(e.cluster)-req1) / w
	rows[2].ReqRate = float64(requests(cluster2)-req2) / w
	if e.cw != nil {
		m, err := e.cw.Metrics(ctx)
		if err != nil {
			return nil, err
		}
		if n := m.Count("couchwatch_node_verdict", map[string]string{"verdict": "up"}, 1); n != nodes {
			return nil, fmt.Errorf("couchwatch saw %d of %d idle nodes up at the end of the window", n, nodes)
		}
	}
	return rows, nil
}

// requests counts every request the nodes of c received.
func requests(c *couchtest.Cluster) int64 {
	var t int64
	for _, n := range c.Nodes() {
		s := n.Stats()
		t += s.Up + s.Membership + s.System + s.ActiveTasks + s.Config + s.NodeInfo + s.Session + s.Data
	}
	return t
}
