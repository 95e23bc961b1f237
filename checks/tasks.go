package checks

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/medic/couchwatch/couch"
)

// sideState is what the side probes of one node learnt: its own tasks and its own
// JavaScript process limit. Guarded by Runner.mu.
type sideState struct {
	tasks   []couch.ActiveTask // the node's own tasks (nil: not known)
	tasksAt time.Time
	jsLimit float64 // [query_server_config] os_process_limit, 0 if unknown
	limitAt time.Time
}

// limitRefresh is how often the node's os_process_limit is read again.
const limitRefresh = 5 * time.Minute

// startSide asks the node's /_active_tasks and, now and then, its os_process_limit, in
// the background with their own deadline. /_active_tasks is cluster-wide in CouchDB: it
// waits for every node, and blocks while a peer hangs (DESIGN.md §5). Nothing waits for
// it: the load sample goes on with the last tasks known, and the verdict never depends
// on it. While one side probe is in flight no other starts.
func (r *Runner) startSide(ctx context.Context, rn *runNode) {
	if !rn.sideBusy.CompareAndSwap(false, true) {
		return
	}
	r.side.Add(1)
	go func() {
		defer r.side.Done()
		defer rn.sideBusy.Store(false)
		obs, _, err := r.probe(ctx, rn, ProbeActiveTasks, CheckActiveTasks, r.cfg.SystemTimeout)
		r.mu.Lock()
		now := r.clk.Now()
		if err == nil {
			rn.side.tasks, rn.side.tasksAt = ownTasks(obs.Tasks, rn.status.ErlangName), now
		}
		needLimit := r.cfg.Load.JSProcs == 0 && (rn.side.limitAt.IsZero() || now.Sub(rn.side.limitAt) >= limitRefresh)
		r.mu.Unlock()
		if !needLimit || ctx.Err() != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, r.cfg.SystemTimeout)
		v, err := rn.n.ConfigValue(pctx, "query_server_config", "os_process_limit")
		cancel()
		limit, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case err == nil && perr == nil && limit > 0:
			rn.side.jsLimit, rn.side.limitAt = limit, r.clk.Now()
			rn.m.jsLimit.set(limit)
		case err != nil && couch.Classify(err) == couch.ReasonHTTP4xx:
			// Not set on the node: CouchDB's default applies.
			rn.side.jsLimit, rn.side.limitAt = DefaultJSProcessLimit, r.clk.Now()
			rn.m.jsLimit.set(DefaultJSProcessLimit)
		}
	}()
}

// freshTasksLocked returns the node's own tasks if they were read recently enough to
// describe this sample, else nil (the tasks signal is then left out).
func (r *Runner) freshTasksLocked(rn *runNode, now time.Time) []couch.ActiveTask {
	if rn.side.tasks == nil || now.Sub(rn.side.tasksAt) > 2*r.cfg.SystemInterval+r.cfg.SystemTimeout {
		return nil
	}
	return rn.side.tasks
}

// knock asks /_up without credentials after an authenticated probe timed out.
func (r *Runner) knock(ctx context.Context, rn *runNode, timeout time.Duration) Knock {
	_, _, err := r.probe(ctx, rn, ProbeKnock, func(ctx context.Context, n *couch.Node) (Observation, error) {
		_, err := n.Knock(ctx)
		return Observation{}, err
	}, timeout)
	if err != nil {
		return KnockSilent
	}
	return KnockAnswered
}

// logAuthLocked logs the auth-coupled hang as it starts and ends on a node.
func (r *Runner) logAuthLocked(rn *runNode, wasBlocked, wasSilent bool) {
	name := rn.n.Name()
	switch {
	case rn.st.authBlocked && !wasBlocked:
		r.log.Error("node auth blocked: kept in rotation", "node", name, "reason", ReasonAuthBlocked)
	case !rn.st.authBlocked && wasBlocked:
		r.log.Warn("node auth blocked ended", "node", name)
	}
	switch {
	case rn.st.silent && !wasSilent:
		r.log.Warn("node silent: no answer even without credentials", "node", name)
	case !rn.st.silent && wasSilent:
		r.log.Info("node silent ended", "node", name)
	}
}

// setFaultFlagsLocked copies the fault flags to the status and metrics. With n=1 a
// node's shards have no other copy: down, or in maintenance_mode = true, they cannot be
// read by the cluster (a cluster n not yet read counts as 1 for maintenance_mode = true,
// which is only ever a choice of the operator).
func (r *Runner) setFaultFlagsLocked(rn *runNode) {
	st := &rn.status
	st.AuthBlocked, st.Silent = rn.st.authBlocked, rn.st.silent
	wasUnavailable := st.DataUnavailable
	maintTrue := rn.st.base != Down && rn.st.maint == couch.StatusMaintenanceMode
	st.DataUnavailable = (maintTrue && r.clusterN <= 1) || (rn.st.base == Down && r.clusterN == 1)
	if st.DataUnavailable != wasUnavailable {
		if st.DataUnavailable {
			r.log.Warn("node data unavailable", "node", rn.n.Name(), "reason", dataReason(maintTrue))
		} else {
			r.log.Info("node data available again", "node", rn.n.Name())
		}
	}
	rn.m.authBlocked.set(b2f(st.AuthBlocked))
	rn.m.silent.set(b2f(st.Silent))
	rn.m.dataUnavailable.set(b2f(st.DataUnavailable))
}

func dataReason(maintTrue bool) string {
	if maintTrue {
		return "maintenance_mode = true: " + ReasonMaintenanceTrue
	}
	return "down with n=1: its shards have no other copy"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
