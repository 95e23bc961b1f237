package kube

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

func testWriter(t *testing.T, objs ...runtime.Object) (*nodeWriter, *fake.Clientset, *Metrics) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	cfg := DefaultConfig()
	m, _ := NewMetrics(nil)
	return &nodeWriter{client: cs, cfg: cfg, instance: "prod", clk: clocktesting.NewFakeClock(time.Unix(1e9, 0)), m: m}, cs, m
}

func foreignNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7", Labels: map[string]string{"team": "x", "couchwatch.medic.org.evil/couchdb-load": "keep"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{
			{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule},
		}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

func writes(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetVerb() != "watch" {
			out = append(out, a.GetVerb()+"/"+a.GetSubresource())
		}
	}
	return out
}

func TestEnsureTouchesOnlyOurKeys(t *testing.T) {
	ctx := context.Background()
	w, cs, _ := testWriter(t, foreignNode())
	res, err := w.Ensure(ctx, nil, "n1", flagSpec{On: true, Server: "couchdb-1"})
	if err != nil || !res.Changed || !res.Taint {
		t.Fatalf("Ensure on = (%+v, %v), want changed with taint", res, err)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if n.Labels["team"] != "x" || n.Labels["couchwatch.medic.org.evil/couchdb-load"] != "keep" || n.Labels["couchwatch.medic.org/couchdb-load"] != "high" ||
		n.Labels["couchwatch.medic.org/flagged-by.prod"] != "couchdb-1" {
		t.Fatalf("labels = %v", n.Labels)
	}
	wantTaints := []corev1.Taint{
		{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule},
		{Key: "couchwatch.medic.org/couchdb-saturated", Value: "couchdb-1", Effect: corev1.TaintEffectPreferNoSchedule},
	}
	if got, _ := json.Marshal(n.Spec.Taints); string(got) != mustJSON(wantTaints) {
		t.Fatalf("taints = %s, want %s", got, mustJSON(wantTaints))
	}
	if c := condition(n, ConditionType); len(n.Status.Conditions) != 2 || c == nil || c.Status != corev1.ConditionTrue || condition(n, corev1.NodeReady) == nil {
		t.Fatalf("conditions = %+v", n.Status.Conditions)
	}

	// Idempotent: a second Ensure writes nothing.
	cs.ClearActions()
	if res, err := w.Ensure(ctx, n, "n1", flagSpec{On: true, Server: "couchdb-1"}); err != nil || res.Changed {
		t.Fatalf("second Ensure = (%+v, %v)", res, err)
	}
	if ws := writes(cs); len(ws) != 0 {
		t.Fatalf("second Ensure wrote %v", ws)
	}

	// Clearing removes ours and keeps theirs; the condition turns False.
	res, err = w.Ensure(ctx, n, "n1", flagSpec{})
	if err != nil || !res.Changed || res.Taint {
		t.Fatalf("Ensure off = (%+v, %v)", res, err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if _, ok := n.Labels["couchwatch.medic.org/couchdb-load"]; ok || n.Labels["team"] != "x" || len(n.Labels) != 2 {
		t.Fatalf("labels after clear = %v", n.Labels)
	}
	if got := mustJSON(n.Spec.Taints); got != mustJSON(wantTaints[:1]) {
		t.Fatalf("taints after clear = %s", got)
	}
	if c := condition(n, ConditionType); c == nil || c.Status != corev1.ConditionFalse || c.Reason != condReasonRecovered {
		t.Fatalf("condition after clear = %+v", c)
	}
}

func TestEnsureRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	w, cs, m := testWriter(t, foreignNode())
	conflicts := 2
	cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "" && conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "n1", nil)
		}
		return false, nil, nil
	})
	stale := foreignNode()
	res, err := w.Ensure(ctx, stale, "n1", flagSpec{On: true, Server: "couchdb-1"})
	if err != nil || !res.Changed {
		t.Fatalf("Ensure = (%+v, %v)", res, err)
	}
	gets := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == "get" {
			gets++
		}
	}
	if gets != 2 {
		t.Fatalf("re-read the node %d times after 2 conflicts, want 2", gets)
	}
	if v := testutilValue(m.apiErrors.WithLabelValues(verbPatch)); v != 0 {
		t.Fatalf("conflicts counted as API errors: %v", v)
	}
}

func TestEnsureFailureIsCounted(t *testing.T) {
	w, cs, m := testWriter(t, foreignNode())
	cs.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", nil)
	})
	if _, err := w.Ensure(context.Background(), nil, "n1", flagSpec{On: true}); !apierrors.IsForbidden(err) {
		t.Fatalf("Ensure = %v, want forbidden", err)
	}
	if v := testutilValue(m.apiErrors.WithLabelValues(verbPatch)); v != 1 {
		t.Fatalf("patch errors = %v, want 1", v)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func condition(n *corev1.Node, typ corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// A status patch that conflicts after the spec patch landed is retried from a
// fresh read, which already shows the ownership: the transition still counts.
func TestEnsureChangeSurvivesStatusConflict(t *testing.T) {
	ctx := context.Background()
	w, cs, _ := testWriter(t, foreignNode())
	conflicts := 1
	cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" && conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "n1", nil)
		}
		return false, nil, nil
	})
	res, err := w.Ensure(ctx, foreignNode(), "n1", flagSpec{On: true, Server: "couchdb-1"})
	if err != nil || !res.Changed || conflicts != 0 {
		t.Fatalf("Ensure = (%+v, %v) after %d conflicts left, want changed", res, err, conflicts)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if c := condition(n, ConditionType); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("condition = %+v, want True after the retry", c)
	}
}

// Two instances on one node: the second adds its owner label only, the first
// leaving keeps the taint, the last leaving clears every mark.
func TestEnsureTwoOwners(t *testing.T) {
	ctx := context.Background()
	a, cs, _ := testWriter(t, foreignNode())
	b := &nodeWriter{client: cs, cfg: a.cfg, instance: "staging", clk: a.clk, m: a.m}
	state := func() string {
		n, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		m := a.cfg.marks(n)
		v := "none"
		if m.Taint != nil {
			v = m.Taint.Value
		}
		return v + " " + m.Label + " " + n.Labels[a.cfg.OwnerKey("prod")] + "/" + n.Labels[a.cfg.OwnerKey("staging")] + " " + string(condition(n, ConditionType).Status)
	}
	steps := []struct {
		w       *nodeWriter
		want    flagSpec
		changed bool
		others  []string
		state   string
	}{
		{a, flagSpec{On: true, Server: "couchdb-1"}, true, nil, "couchdb-1 high couchdb-1/ True"},
		{b, flagSpec{On: true, Server: "couchdb-9"}, true, []string{"prod"}, "couchdb-1 high couchdb-1/couchdb-9 True"},
		{a, flagSpec{}, true, []string{"staging"}, "couchdb-9 high /couchdb-9 True"},
		{a, flagSpec{}, false, []string{"staging"}, "couchdb-9 high /couchdb-9 True"},
		{b, flagSpec{}, true, nil, "none  / False"},
	}
	for i, s := range steps {
		res, err := s.w.Ensure(ctx, nil, "n1", s.want)
		if err != nil || res.Changed != s.changed || mustJSON(res.Others) != mustJSON(s.others) {
			t.Fatalf("step %d: Ensure = (%+v, %v), want changed=%v others=%v", i, res, err, s.changed, s.others)
		}
		if got := state(); got != s.state {
			t.Fatalf("step %d: node %q, want %q", i, got, s.state)
		}
	}
}
