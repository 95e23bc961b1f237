package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// evictRetry is the pause after an eviction that was refused or failed,
// shorter than the cool-down after a successful one.
const evictRetry = 30 * time.Second

// evictCandidates are the pods Rebalance may evict from nodes, stable order:
// matching sel, running on one of nodes, not terminating, not finished, and
// never a CouchDB pod.
func evictCandidates(pods []*corev1.Pod, sel labels.Selector, nodes map[string]bool, couch map[string]bool) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		switch {
		case !nodes[p.Spec.NodeName], !sel.Matches(labels.Set(p.Labels)),
			p.DeletionTimestamp != nil, couch[p.Namespace+"/"+p.Name],
			p.Status.Phase == corev1.PodSucceeded, p.Status.Phase == corev1.PodFailed:
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Spec.NodeName != out[j].Spec.NodeName {
			return out[i].Spec.NodeName < out[j].Spec.NodeName
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// rebalance evicts at most one candidate pod through the Eviction API (so
// PodDisruptionBudgets hold), within the guard's cool-down.
func (c *Controller) rebalance(ctx context.Context, cands []*corev1.Pod) {
	if !c.cfg.Rebalance || len(cands) == 0 {
		return
	}
	now := c.clk.Now()
	pod := cands[0]
	log := c.log.With("pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	var cool *CooldownError
	switch err := c.guard.evict(now); {
	case errors.As(err, &cool):
		return
	case errors.Is(err, ErrDryRun):
		log.Info("dry run: would evict pod from saturated node")
		c.m.evictions.WithLabelValues(resultDryRun).Inc()
		c.guard.evicted(now, c.cfg.EvictCooldown)
		return
	}
	ev := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
	}
	err := c.client.PolicyV1().Evictions(pod.Namespace).Evict(ctx, ev)
	switch {
	case err == nil:
		c.m.evictions.WithLabelValues(resultEvicted).Inc()
		c.guard.evicted(now, c.cfg.EvictCooldown)
		log.Info("evicted pod from saturated node")
		msg := fmt.Sprintf("Evicted by couchwatch: node %s hosts a saturated CouchDB", pod.Spec.NodeName)
		if err := c.event(ctx, podRef(pod), corev1.EventTypeNormal, EventEvicted, msg); err != nil {
			log.Warn("event not recorded", "err", err)
		}
	case apierrors.IsTooManyRequests(err):
		c.m.evictions.WithLabelValues(resultBlockedPDB).Inc()
		c.guard.evicted(now, min(evictRetry, c.cfg.EvictCooldown))
		log.Info("eviction refused by disruption budget", "err", err)
	case ctx.Err() != nil:
		// Leadership lost or shutting down: not an API error.
	default:
		c.m.evictions.WithLabelValues(resultError).Inc()
		c.m.apiError(verbEvict)
		c.guard.evicted(now, min(evictRetry, c.cfg.EvictCooldown))
		log.Warn("eviction failed", "err", err)
	}
}
