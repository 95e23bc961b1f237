package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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

// flagSpec is what one instance wants on a node: its owner label with the
// server's taint value (On), or no owner label.
type flagSpec struct {
	On     bool
	Server string // taint value naming the saturated CouchDB when On
}

// nodeMarks reads our keys off a node.
type nodeMarks struct {
	Taint     *corev1.Taint
	Label     string
	Condition *corev1.NodeCondition
	Owners    map[string]string // instance -> taint value of the CouchDB it flags for
}

func (c Config) marks(n *corev1.Node) nodeMarks {
	var m nodeMarks
	for i := range n.Spec.Taints {
		if n.Spec.Taints[i].Key == c.TaintKey() {
			m.Taint = &n.Spec.Taints[i]
			break
		}
	}
	m.Label = n.Labels[c.LabelKey()]
	for k, v := range n.Labels {
		if inst, ok := strings.CutPrefix(k, c.ownerPrefix()); ok && inst != "" {
			if m.Owners == nil {
				m.Owners = map[string]string{}
			}
			m.Owners[inst] = v
		}
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == ConditionType {
			m.Condition = &n.Status.Conditions[i]
			break
		}
	}
	return m
}

// flagged reports whether n carries any of the shared marks.
func (m nodeMarks) flagged() bool {
	return m.Taint != nil || m.Label != "" || (m.Condition != nil && m.Condition.Status == corev1.ConditionTrue)
}

// shared is the state of the marks every instance shares on one node (taint,
// load label, condition): on while any instance owns the flag.
type shared struct {
	On    bool
	Value string // taint value
}

// sharedFor is what the shared marks must be once instance applies want: on
// while any owner remains. The taint value stays as it is while it names a
// remaining owner's CouchDB (a second owner does not rewrite it), else it
// names the writer's, else the first remaining owner's (by instance name).
// Every instance computes the same answer from the same node, so none undoes
// another's write.
func sharedFor(m nodeMarks, instance string, want flagSpec) shared {
	owners := make(map[string]string, len(m.Owners)+1)
	for k, v := range m.Owners {
		owners[k] = v
	}
	delete(owners, instance)
	if want.On {
		owners[instance] = want.Server
	}
	if len(owners) == 0 {
		return shared{}
	}
	if m.Taint != nil {
		for _, v := range owners {
			if v == m.Taint.Value {
				return shared{On: true, Value: v}
			}
		}
	}
	if want.On {
		return shared{On: true, Value: want.Server}
	}
	names := make([]string, 0, len(owners))
	for k := range owners {
		names = append(names, k)
	}
	sort.Strings(names)
	return shared{On: true, Value: owners[names[0]]}
}

// specOK reports whether n's owner label, taint and label match.
func specOK(m nodeMarks, instance string, want flagSpec, sh shared) bool {
	v, owned := m.Owners[instance]
	if owned != want.On || (want.On && v != want.Server) {
		return false
	}
	if !sh.On {
		return m.Taint == nil && m.Label == ""
	}
	return m.Taint != nil && m.Taint.Effect == corev1.TaintEffectPreferNoSchedule &&
		m.Taint.Value == sh.Value && m.Label == LoadHigh
}

// statusOK reports whether n's condition matches. Off means "not True": a
// node that never had the condition needs nothing.
func statusOK(m nodeMarks, sh shared) bool {
	if !sh.On {
		return m.Condition == nil || m.Condition.Status != corev1.ConditionTrue
	}
	return m.Condition != nil && m.Condition.Status == corev1.ConditionTrue
}

// nodeWriter writes one instance's flags on nodes; every write is
// read-compare-write.
type nodeWriter struct {
	client   kubernetes.Interface
	cfg      Config
	instance string
	clk      clock.Clock
	m        *Metrics
}

// ensured is what one Ensure did.
type ensured struct {
	Changed bool     // this instance's ownership appeared or disappeared
	Taint   bool     // the taint is on the node afterwards
	Others  []string // other instances that still own the flag, sorted
}

// Ensure makes node carry this instance's ownership as want says, and the
// shared marks on while any instance owns the flag, starting from cached (may
// be stale or nil). It writes only on difference and touches only our keys;
// each patch carries the resourceVersion it was computed from, so a
// concurrent writer (another instance included) makes it fail with a conflict
// and it is recomputed from a fresh read.
func (w *nodeWriter) Ensure(ctx context.Context, cached *corev1.Node, name string, want flagSpec) (res ensured, err error) {
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
		m := w.cfg.marks(node)
		sh := sharedFor(m, w.instance, want)
		if !specOK(m, w.instance, want, sh) {
			body, err := w.specPatch(node, want, sh)
			if err != nil {
				return err
			}
			n, err := w.patch(ctx, node, "", body, types.MergePatchType)
			if err != nil {
				return err
			}
			// Only a write that landed changes ownership; it stays changed
			// when a later step of this attempt conflicts and is retried.
			_, before := m.Owners[w.instance]
			node, m = n, w.cfg.marks(n)
			if _, after := m.Owners[w.instance]; before != after {
				res.Changed = true
			}
		}
		if !statusOK(m, sh) {
			body, err := w.statusPatch(node, sh)
			if err != nil {
				return err
			}
			n, err := w.patch(ctx, node, "status", body, types.StrategicMergePatchType)
			if err != nil {
				return err
			}
			node, m = n, w.cfg.marks(n)
		}
		res.Taint, res.Others = m.Taint != nil, nil
		for k := range m.Owners {
			if k != w.instance {
				res.Others = append(res.Others, k)
			}
		}
		sort.Strings(res.Others)
		return nil
	})
	return res, err
}

// patch sends one patch of node (sub: "" or "status"); conflicts are not
// counted as API errors, they are retried.
func (w *nodeWriter) patch(ctx context.Context, node *corev1.Node, sub string, body []byte, pt types.PatchType) (*corev1.Node, error) {
	var subs []string
	what := "node " + node.Name
	if sub != "" {
		subs = []string{sub}
		what += " " + sub
	}
	n, err := w.client.CoreV1().Nodes().Patch(ctx, node.Name, pt, body, metav1.PatchOptions{FieldManager: "couchwatch"}, subs...)
	if err != nil {
		if !apierrors.IsConflict(err) {
			w.m.apiError(verbPatch)
		}
		return nil, fmt.Errorf("patch %s: %w", what, err)
	}
	return n, nil
}

// specPatch is a JSON merge patch of our owner label, the taint and the load
// label, guarded by the resourceVersion node was read at. The taint list is
// replaced whole (a merge patch cannot edit a list), which is safe only
// because of that guard; every other taint is copied through unchanged.
func (w *nodeWriter) specPatch(node *corev1.Node, want flagSpec, sh shared) ([]byte, error) {
	taints := make([]corev1.Taint, 0, len(node.Spec.Taints)+1)
	for _, t := range node.Spec.Taints {
		if t.Key != w.cfg.TaintKey() {
			taints = append(taints, t)
		}
	}
	var label, owner any // nil deletes the key
	if sh.On {
		taints = append(taints, corev1.Taint{Key: w.cfg.TaintKey(), Value: sh.Value, Effect: corev1.TaintEffectPreferNoSchedule})
		label = LoadHigh
	}
	if want.On {
		owner = want.Server
	}
	var taintField any = taints
	if len(taints) == 0 {
		taintField = nil
	}
	return marshal(map[string]any{
		"metadata": map[string]any{
			"resourceVersion": node.ResourceVersion,
			"labels":          map[string]any{w.cfg.LabelKey(): label, w.cfg.OwnerKey(w.instance): owner},
		},
		"spec": map[string]any{"taints": taintField},
	})
}

// statusPatch is a strategic merge patch of our condition alone (conditions
// merge by type, so other writers' conditions are never touched), guarded by
// the resourceVersion node was read at like the spec patch.
func (w *nodeWriter) statusPatch(node *corev1.Node, sh shared) ([]byte, error) {
	now := metav1.NewTime(w.clk.Now().Truncate(time.Second))
	cond := corev1.NodeCondition{
		Type:               ConditionType,
		Status:             corev1.ConditionFalse,
		Reason:             condReasonRecovered,
		Message:            "CouchDB on this node is no longer saturated",
		LastHeartbeatTime:  now,
		LastTransitionTime: now,
	}
	if sh.On {
		cond.Status = corev1.ConditionTrue
		cond.Reason = condReasonSaturated
		cond.Message = fmt.Sprintf("CouchDB %s on this node is saturated; new pods are steered away", sh.Value)
	}
	return marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": node.ResourceVersion},
		"status":   map[string]any{"conditions": []corev1.NodeCondition{cond}},
	})
}

func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode node patch: %w", err)
	}
	return b, nil
}
