package kube

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func testutilValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func TestParseServer(t *testing.T) {
	tests := []struct {
		in, svc, ns string
		err         bool
	}{
		{in: "couchdb-1", svc: "couchdb-1", ns: "def"},
		{in: "couchdb-1.cht.svc.cluster.local", svc: "couchdb-1", ns: "cht"},
		{in: "couchdb-1.cht", svc: "couchdb-1", ns: "cht"},
		{in: "couchdb-1.cht:5984", svc: "couchdb-1", ns: "cht"},
		{in: "http://couchdb-2.cht.svc:5984", svc: "couchdb-2", ns: "cht"},
		{in: "Bad_Name", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseServer(tc.in, "def")
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if !tc.err && (got.Service != tc.svc || got.Namespace != tc.ns || got.Server != tc.in) {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

type fakePods map[string]*corev1.Pod

func (f fakePods) Get(name string) (*corev1.Pod, error) {
	if p, ok := f[name]; ok {
		return p, nil
	}
	return nil, errors.New("not found")
}

func (f fakePods) List(sel labels.Selector) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, p := range f {
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

func pod(name, node string, l map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: l}, Spec: corev1.PodSpec{NodeName: node}}
}

func slice(svc string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		Endpoints:  eps,
	}
}

func ep(podName string, node string, ready bool) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
	if podName != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: podName}
	}
	if node != "" {
		e.NodeName = &node
	}
	return e
}

func TestResolve(t *testing.T) {
	pods := fakePods{
		"couch-a": pod("couch-a", "node-a", map[string]string{"cht.service": "couchdb-1"}),
		"couch-b": pod("couch-b", "node-b", map[string]string{"cht.service": "couchdb-2"}),
		"api":     pod("api", "node-c", map[string]string{"cht.service": "api"}),
		"unsched": pod("unsched", "", map[string]string{"cht.service": "couchdb-3"}),
	}
	sel, _ := labels.Parse("cht.service")
	tgt := target{Server: "couchdb-1.ns.svc", Service: "couchdb-1", Namespace: "ns"}
	tests := []struct {
		name   string
		target target
		slices []*discoveryv1.EndpointSlice
		node   string
		pod    string
	}{
		{name: "endpoint slice target pod", target: tgt, slices: []*discoveryv1.EndpointSlice{slice("couchdb-1", ep("couch-a", "stale-node", true))}, node: "node-a", pod: "couch-a"},
		{name: "other services' slices are ignored", target: tgt, slices: []*discoveryv1.EndpointSlice{slice("couchdb-2", ep("couch-b", "", true))}, node: "node-a", pod: "couch-a"},
		{name: "ready endpoint wins", target: tgt, slices: []*discoveryv1.EndpointSlice{slice("couchdb-1", ep("couch-b", "", false), ep("couch-a", "", true))}, node: "node-a", pod: "couch-a"},
		{name: "endpoint node when the pod is not cached", target: tgt, slices: []*discoveryv1.EndpointSlice{slice("couchdb-1", ep("gone", "node-z", true))}, node: "node-z"},
		{name: "selector fallback", target: target{Service: "couchdb-2"}, node: "node-b", pod: "couch-b"},
		{name: "unscheduled pod is unplaced", target: target{Service: "couchdb-3"}},
		{name: "nothing matches", target: target{Service: "couchdb-9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := resolve(tc.target, tc.slices, pods, sel)
			gotPod := ""
			if p.Pod != nil {
				gotPod = p.Pod.Name
			}
			if p.Node != tc.node || gotPod != tc.pod {
				t.Fatalf("placed on %q by pod %q, want %q by %q", p.Node, gotPod, tc.node, tc.pod)
			}
		})
	}
}

func TestEvictCandidates(t *testing.T) {
	sel, _ := labels.Parse("cht.service in (api, sentinel)")
	now := metav1.Now()
	terminating := pod("api-old", "hot", map[string]string{"cht.service": "api"})
	terminating.DeletionTimestamp = &now
	done := pod("api-done", "hot", map[string]string{"cht.service": "api"})
	done.Status.Phase = corev1.PodSucceeded
	pods := []*corev1.Pod{
		pod("sentinel", "hot", map[string]string{"cht.service": "sentinel"}),
		pod("api-2", "hot", map[string]string{"cht.service": "api"}),
		pod("api-cold", "cold", map[string]string{"cht.service": "api"}),
		pod("couch", "hot", map[string]string{"cht.service": "couchdb-1"}),
		pod("couch-disguised", "hot", map[string]string{"cht.service": "api"}),
		pod("nginx", "hot", map[string]string{"cht.service": "nginx"}),
		terminating, done,
	}
	got := evictCandidates(pods, sel, map[string]bool{"hot": true}, map[string]bool{"ns/couch-disguised": true})
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	if want := "api-2,sentinel"; join(names) != want {
		t.Fatalf("candidates = %v, want %s", names, want)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}
