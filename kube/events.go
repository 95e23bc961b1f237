package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Event reasons couchwatch emits.
const (
	EventFlagged = "CouchDBSaturated"
	EventCleared = "CouchDBRecovered"
	EventEvicted = "CouchDBRebalance"
)

// event creates one core/v1 Event about obj, synchronously and under the
// leader's context, so no event is written after the lease is lost. Events are
// emitted on transitions only, so there is nothing to aggregate.
func (c *Controller) event(ctx context.Context, ref corev1.ObjectReference, typ, reason, msg string) error {
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault // cluster-scoped objects, as the kubelet does for nodes
	}
	now := c.clk.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x%02x", ref.Name, now.UnixNano(), c.events.Add(1)%256),
			Namespace: ns,
		},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             msg,
		Type:                typ,
		Source:              corev1.EventSource{Component: "couchwatch"},
		FirstTimestamp:      metav1.NewTime(now),
		LastTimestamp:       metav1.NewTime(now),
		Count:               1,
		ReportingController: "couchwatch",
		ReportingInstance:   c.identity,
		Action:              reason,
	}
	if _, err := c.client.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		c.m.apiError(verbCreate)
		return fmt.Errorf("create event %s on %s %s: %w", reason, ref.Kind, ref.Name, err)
	}
	return nil
}

func nodeRef(n *corev1.Node) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}
}

func podRef(p *corev1.Pod) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Name: p.Name, Namespace: p.Namespace, UID: p.UID}
}

func metaFor(name, ns string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: ns} }
