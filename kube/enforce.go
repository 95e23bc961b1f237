package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// enforce brings the nodes to the plan: clears and keeps always, new flags
// only within the budget (this instance's own flags count against it). A
// budget refusal is logged once until the refusals change.
func (c *Controller) enforce(ctx context.Context, byName map[string]*corev1.Node, couchHosts int, clears, keeps, sets []want, placed map[string]placement) {
	for _, w := range clears {
		c.apply(ctx, byName[w.Node], w, placed)
	}
	for _, w := range keeps {
		c.apply(ctx, byName[w.Node], w, placed)
	}
	flagged := len(keeps)
	var refused []string
	for _, w := range sets {
		var be *BudgetError
		switch err := c.guard.flag(w.Node, flagged, couchHosts); {
		case errors.As(err, &be):
			refused = append(refused, be.Error())
		case errors.Is(err, ErrDryRun), err == nil:
			flagged++
			c.apply(ctx, byName[w.Node], w, placed)
		}
	}
	if r := strings.Join(refused, "; "); r != c.refused {
		c.refused = r
		if r != "" {
			c.log.Warn("not flagging: budget exhausted", "reason", r)
		}
	}
}

// apply brings one node to w, logs, counts and emits Events when this
// instance's flag appears or goes.
func (c *Controller) apply(ctx context.Context, node *corev1.Node, w want, placed map[string]placement) {
	if node == nil || ctx.Err() != nil {
		return
	}
	log := c.log.With("node", w.Node, "server", w.Server, "reason", w.Reason)
	spec := flagSpec{On: w.Flag}
	if w.Flag {
		spec.Server = c.taintValueFor(w.Server)
	}
	if c.cfg.DryRun {
		c.dryApply(node, w, log)
		return
	}
	if !w.Flag {
		if err := c.guard.clear(); err != nil {
			return
		}
	}
	res, err := c.writer.Ensure(ctx, node, w.Node, spec)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("could not "+verbFor(w.Flag)+" node", "err", err)
		}
		return
	}
	if !res.Changed {
		return
	}
	typ, reason, msg := c.transition(w, spec, res)
	c.m.flags.WithLabelValues(map[bool]string{true: actionSet, false: actionClear}[w.Flag]).Inc()
	if len(res.Others) > 0 {
		log = log.With("other_instances", strings.Join(res.Others, ","))
	}
	log.Info(verbFor(w.Flag) + " node")
	refs := []corev1.ObjectReference{nodeRef(node)}
	if p, ok := placed[w.Server]; ok && p.Pod != nil {
		refs = append(refs, podRef(p.Pod))
	}
	for _, ref := range refs {
		if err := c.event(ctx, ref, typ, reason, msg); err != nil && ctx.Err() == nil {
			log.Warn("event not recorded", "err", err)
		}
	}
}

// transition is the Event of this instance's flag appearing or going.
func (c *Controller) transition(w want, spec flagSpec, res ensured) (typ, reason, msg string) {
	if w.Flag {
		return corev1.EventTypeWarning, EventFlagged,
			fmt.Sprintf("CouchDB %s is saturated: couchwatch (instance %s) set taint %s=%s:PreferNoSchedule", w.Server, c.instance, c.cfg.TaintKey(), spec.Server)
	}
	msg = fmt.Sprintf("CouchDB %s is no longer saturated (%s): couchwatch (instance %s) removed taint %s", w.Server, w.Reason, c.instance, c.cfg.TaintKey())
	if res.Taint {
		msg = fmt.Sprintf("CouchDB %s is no longer saturated (%s): couchwatch (instance %s) no longer needs taint %s; kept for instance(s) %s",
			w.Server, w.Reason, c.instance, c.cfg.TaintKey(), strings.Join(res.Others, ", "))
	}
	return corev1.EventTypeNormal, EventCleared, msg
}

// dryApply records the flag state a dry run pretends to have written.
func (c *Controller) dryApply(node *corev1.Node, w want, log interface{ Info(string, ...any) }) {
	prev, known := c.dry[w.Node]
	if !known {
		_, prev = c.cfg.marks(node).Owners[c.instance]
	}
	if prev != w.Flag {
		log.Info("dry run: would " + verbFor(w.Flag) + " node")
	}
	c.dry[w.Node] = w.Flag
}
