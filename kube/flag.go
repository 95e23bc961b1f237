package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
)

// Condition reasons.
const (
	condReasonSaturated = "CouchDBSaturated"
	condReasonRecovered = "CouchDBRecovered"
)

// flagSpec is the state of our keys on a node.
type flagSpec struct {
	On     bool
	Server string // taint value when On
}

// nodeMarks reads our keys off a node.
type nodeMarks struct {
	Taint     *corev1.Taint
	Label     string
	Condition *corev1.NodeCondition
}

func (c *Controller) marks(n *corev1.Node) nodeMarks {
	var m nodeMarks
	for i := range n.Spec.Taints {
		if n.Spec.Taints[i].Key == c.cfg.TaintKey() {
			m.Taint = &n.Spec.Taints[i]
			break
		}
	}
	m.Label = n.Labels[c.cfg.LabelKey()]
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == ConditionType {
			m.Condition = &n.Status.Conditions[i]
			break
		}
	}
	return m
}

// flagged reports whether n carries any of our marks.
func (m nodeMarks) flagged() bool {
	return m.Taint != nil || m.Label != "" || (m.Condition != nil && m.Condition.Status == corev1.ConditionTrue)
}

// specOK reports whether n's taint and label match want.
func (c *Controller) specOK(m nodeMarks, want flagSpec) bool {
	if !want.On {
		return m.Taint == nil && m.Label == ""
	}
	return m.Taint != nil && m.Taint.Effect == corev1.TaintEffectPreferNoSchedule &&
		(want.Server == "" || m.Taint.Value == want.Server) && m.Label == LoadHigh
}

// statusOK reports whether n's condition matches want. Off means "not True":
// a node that never had the condition needs nothing.
func statusOK(m nodeMarks, want flagSpec) bool {
	if !want.On {
		return m.Condition == nil || m.Condition.Status != corev1.ConditionTrue
	}
	return m.Condition != nil && m.Condition.Status == corev1.ConditionTrue
}

// nodeWriter writes our keys on nodes; every write is read-compare-write.
type nodeWriter struct {
	client kubernetes.Interface
	cfg    Config
	clk    clock.Clock
	m      *Metrics
	marks  func(*corev1.Node) nodeMarks
	specOK func(nodeMarks, flagSpec) bool
}

// Ensure makes node carry exactly want under our prefix, starting from cached
// (may be stale or nil). It writes only on difference and touches only our
// keys; a taint/label patch carries the resourceVersion it was computed from,
// so a concurrent writer makes it fail with a conflict and it is recomputed
// from a fresh read. It reports whether the taint appeared or disappeared.
func (w *nodeWriter) Ensure(ctx context.Context, cached *corev1.Node, name string, want flagSpec) (changed bool, err error) {
	node := cached
	fresh := false
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if node == nil || fresh {
			n, err := w.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				w.m.apiError(verbGet)
				return fmt.Errorf("get node %s: %w", name, err)
			}
			node = n
		}
		fresh = true // any retry re-reads
		m := w.marks(node)
		if !w.specOK(m, want) {
			patch, err := w.specPatch(node, want)
			if err != nil {
				return err
			}
			n, err := w.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "couchwatch"})
			if err != nil {
				if !apierrors.IsConflict(err) {
					w.m.apiError(verbPatch)
				}
				return fmt.Errorf("patch node %s: %w", name, err)
			}
			changed = (m.Taint != nil) != (w.marks(n).Taint != nil)
			node = n
			m = w.marks(n)
		}
		if !statusOK(m, want) {
			patch, err := w.statusPatch(want)
			if err != nil {
				return err
			}
			n, err := w.client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "couchwatch"}, "status")
			if err != nil {
				if !apierrors.IsConflict(err) {
					w.m.apiError(verbPatch)
				}
				return fmt.Errorf("patch node %s status: %w", name, err)
			}
			node = n
		}
		return nil
	})
	return changed, err
}

// specPatch is a JSON merge patch of our taint and label, guarded by the
// resourceVersion node was read at. The taint list is replaced whole (a merge
// patch cannot edit a list), which is safe only because of that guard; every
// other taint is copied through unchanged.
func (w *nodeWriter) specPatch(node *corev1.Node, want flagSpec) ([]byte, error) {
	taints := make([]corev1.Taint, 0, len(node.Spec.Taints)+1)
	for _, t := range node.Spec.Taints {
		if t.Key != w.cfg.TaintKey() {
			taints = append(taints, t)
		}
	}
	var label any // nil deletes the key
	if want.On {
		taints = append(taints, corev1.Taint{Key: w.cfg.TaintKey(), Value: want.Server, Effect: corev1.TaintEffectPreferNoSchedule})
		label = LoadHigh
	}
	var taintField any = taints
	if len(taints) == 0 {
		taintField = nil
	}
	p := map[string]any{
		"metadata": map[string]any{
			"resourceVersion": node.ResourceVersion,
			"labels":          map[string]any{w.cfg.LabelKey(): label},
		},
		"spec": map[string]any{"taints": taintField},
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode node patch: %w", err)
	}
	return b, nil
}

// statusPatch is a strategic merge patch of our condition alone: conditions
// merge by type, so other writers' conditions are never touched.
func (w *nodeWriter) statusPatch(want flagSpec) ([]byte, error) {
	now := metav1.NewTime(w.clk.Now().Truncate(time.Second))
	cond := corev1.NodeCondition{
		Type:               ConditionType,
		Status:             corev1.ConditionFalse,
		Reason:             condReasonRecovered,
		Message:            "CouchDB on this node is no longer saturated",
		LastHeartbeatTime:  now,
		LastTransitionTime: now,
	}
	if want.On {
		cond.Status = corev1.ConditionTrue
		cond.Reason = condReasonSaturated
		cond.Message = fmt.Sprintf("CouchDB %s on this node is saturated; new pods are steered away", want.Server)
	}
	b, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return nil, fmt.Errorf("encode node status patch: %w", err)
	}
	return b, nil
}
