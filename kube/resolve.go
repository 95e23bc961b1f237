package kube

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// target is a COUCHDB_SERVERS entry seen as a Kubernetes Service.
type target struct {
	Server    string // as configured
	Service   string
	Namespace string
}

// parseServer maps a COUCHDB_SERVERS host ("couchdb-1",
// "couchdb-1.ns.svc.cluster.local", "couchdb-1.ns:5984", or a URL) to its
// Service: the first DNS label, in the namespace the name carries, else ns.
func parseServer(server, ns string) (target, error) {
	host := strings.TrimSpace(server)
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil {
			return target{}, fmt.Errorf("server %q: %w", server, err)
		}
		host = u.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	t := target{Server: server, Service: parts[0], Namespace: ns}
	switch {
	case len(parts) >= 3 && parts[2] == "svc":
		t.Namespace = parts[1]
	case len(parts) == 2:
		t.Namespace = parts[1]
	}
	if msgs := validation.IsDNS1035Label(t.Service); len(msgs) > 0 {
		return target{}, fmt.Errorf("server %q: %q is not a Service name: %s", server, t.Service, strings.Join(msgs, "; "))
	}
	return t, nil
}

// placement is where a CouchDB server runs; Node is empty when unknown.
type placement struct {
	Server string
	Pod    *corev1.Pod // nil when only the EndpointSlice named the node
	Node   string
}

// podLookup finds pods in the watched namespace (a lister in production).
type podLookup interface {
	Get(name string) (*corev1.Pod, error)
	List(selector labels.Selector) ([]*corev1.Pod, error)
}

// resolve finds the Kubernetes node of t: the Service's EndpointSlices, the
// endpoint's target pod, its spec.nodeName. Without an endpoint it falls back
// to pods matching podSel whose value for one of the selector's keys is the
// Service name (cht.service=couchdb-1).
func resolve(t target, slices []*discoveryv1.EndpointSlice, pods podLookup, podSel labels.Selector) placement {
	p := placement{Server: t.Server}
	type cand struct {
		pod   string
		node  string
		ready bool
	}
	var cands []cand
	for _, s := range slices {
		if s.Labels[discoveryv1.LabelServiceName] != t.Service {
			continue
		}
		for _, e := range s.Endpoints {
			c := cand{ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
			if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
				c.pod = e.TargetRef.Name
			}
			if e.NodeName != nil {
				c.node = *e.NodeName
			}
			if c.pod != "" || c.node != "" {
				cands = append(cands, c)
			}
		}
	}
	// Ready endpoints first, then by name, so the answer is stable.
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].ready != cands[j].ready {
			return cands[i].ready
		}
		return cands[i].pod+"/"+cands[i].node < cands[j].pod+"/"+cands[j].node
	})
	for _, c := range cands {
		if c.pod != "" {
			if pod, err := pods.Get(c.pod); err == nil && pod.Spec.NodeName != "" {
				p.Pod, p.Node = pod, pod.Spec.NodeName
				return p
			}
		}
		if c.node != "" {
			p.Node = c.node
			return p
		}
	}
	matches, err := pods.List(podSel)
	if err != nil {
		return p
	}
	reqs, _ := podSel.Requirements()
	sort.Slice(matches, func(i, j int) bool { return matches[i].Name < matches[j].Name })
	for _, pod := range matches {
		if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
			continue
		}
		for _, r := range reqs {
			if pod.Labels[r.Key()] == t.Service {
				p.Pod, p.Node = pod, pod.Spec.NodeName
				return p
			}
		}
	}
	return p
}

// taintValue is the server name if Kubernetes accepts it as a taint value,
// else its Service name.
func taintValue(t target) string {
	if len(validation.IsValidLabelValue(t.Server)) == 0 {
		return t.Server
	}
	return t.Service
}
