package kubetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

const opTimeout = 10 * time.Second

func opCtx(t testing.TB) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(context.Background(), opTimeout)
}

// Namespace creates a namespace named after the test and deletes it afterwards.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ctx, cancel := opCtx(t)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: dnsName(t.Name()) + "-"}}
	ns, err := e.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = e.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// dnsName turns a test name into a DNS label prefix.
func dnsName(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = strings.Trim(out[:40], "-")
	}
	if out == "" {
		out = "t"
	}
	return out
}

// CreateNode creates a schedulable, Ready node with room for pods, removes the
// not-ready taint admission adds (no controller-manager here), and deletes
// the node afterwards. Node names are cluster-wide: make them unique per test.
func (e *Env) CreateNode(t testing.TB, name string, labels map[string]string) *corev1.Node {
	t.Helper()
	ctx, cancel := opCtx(t)
	defer cancel()
	l := map[string]string{"kubernetes.io/hostname": name}
	for k, v := range labels {
		l[k] = v
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	n, err := e.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = e.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	})
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Capacity, cur.Status.Allocatable = res, res
		cur.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}}
		n, err = e.Client.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var keep []corev1.Taint
		for _, tt := range cur.Spec.Taints {
			if tt.Key != corev1.TaintNodeNotReady {
				keep = append(keep, tt)
			}
		}
		if len(keep) == len(cur.Spec.Taints) {
			n = cur
			return nil
		}
		cur.Spec.Taints = keep
		n, err = e.Client.CoreV1().Nodes().Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("node %s taints: %v", name, err)
	}
	return n
}

// PodSpec is what CreatePod needs.
type PodSpec struct {
	Name   string
	Labels map[string]string
	// Node binds the pod directly; empty leaves it to the scheduler.
	Node string
}

// CreatePod creates a pod (one container that never runs: there is no kubelet)
// and marks it Running when it is bound to a node.
func (e *Env) CreatePod(t testing.TB, ns string, spec PodSpec) *corev1.Pod {
	t.Helper()
	ctx, cancel := opCtx(t)
	defer cancel()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Namespace: ns, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName:   spec.Node,
			Containers: []corev1.Container{{Name: "main", Image: "pause:kubetest"}},
		},
	}
	p, err := e.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, spec.Name, err)
	}
	if spec.Node == "" {
		return p
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p, err = e.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s status: %v", ns, spec.Name, err)
	}
	return p
}

// CreateService creates a ClusterIP Service on port 5984 selecting selector.
func (e *Env) CreateService(t testing.TB, ns, name string, selector map[string]string) *corev1.Service {
	t.Helper()
	ctx, cancel := opCtx(t)
	defer cancel()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 5984, TargetPort: intstr.FromInt32(5984)}},
		},
	}
	s, err := e.Client.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", ns, name, err)
	}
	return s
}

// CreateEndpointSlice creates the EndpointSlice of service with one ready
// endpoint per pod, as the EndpointSlice controller would (there is none).
func (e *Env) CreateEndpointSlice(t testing.TB, ns, service string, pods ...*corev1.Pod) *discoveryv1.EndpointSlice {
	t.Helper()
	ctx, cancel := opCtx(t)
	defer cancel()
	ready := true
	port, proto := int32(5984), corev1.ProtocolTCP
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      service + "-kubetest",
			Namespace: ns,
			Labels:    map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: strPtr("http"), Port: &port, Protocol: &proto}},
	}
	for i, p := range pods {
		node := p.Spec.NodeName
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.1.0.%d", i+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:   &node,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		})
	}
	s, err := e.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create endpointslice for %s/%s: %v", ns, service, err)
	}
	return s
}

func strPtr(s string) *string { return &s }

// CreatePDB creates a PodDisruptionBudget and writes its status by hand (no
// disruption controller here): disruptionsAllowed decides whether the
// Eviction API lets a matching pod go.
func (e *Env) CreatePDB(t testing.TB, ns, name string, selector map[string]string, disruptionsAllowed int32) *policyv1.PodDisruptionBudget {
	t.Helper()
	ctx, cancel := opCtx(t)
	defer cancel()
	minAvail := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvail,
			Selector:     &metav1.LabelSelector{MatchLabels: selector},
		},
	}
	pdb, err := e.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pdb %s/%s: %v", ns, name, err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{
		ObservedGeneration: pdb.Generation,
		DisruptionsAllowed: disruptionsAllowed,
		CurrentHealthy:     1 + disruptionsAllowed,
		DesiredHealthy:     1,
		ExpectedPods:       1 + disruptionsAllowed,
	}
	pdb, err = e.Client.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, pdb, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("pdb %s/%s status: %v", ns, name, err)
	}
	return pdb
}

// Eventually polls cond every 50 ms until it returns true, an error, or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil && !apierrors.IsNotFound(err) {
			last = err
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("timed out after %s waiting for %s (last error: %v)", d, what, last)
	}
}
