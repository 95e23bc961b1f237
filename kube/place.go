package kube

import (
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// placements is where this instance's CouchDB servers run.
type placements struct {
	placed    map[string]placement // server -> where it runs
	byNode    map[string][]string  // Kubernetes node -> servers on it
	unplaced  map[string]bool      // servers whose node is unknown right now
	couchPods map[string]bool      // "ns/name" of every CouchDB pod: never evicted
}

// place resolves every target to its node. Pods the fallback selector names
// as one of the targets' CouchDB are counted as CouchDB pods too, even when
// the EndpointSlices already placed the server elsewhere.
func place(targets []target, slices []*discoveryv1.EndpointSlice, pods podLookup, podSel labels.Selector) placements {
	p := placements{placed: map[string]placement{}, byNode: map[string][]string{}, unplaced: map[string]bool{}, couchPods: map[string]bool{}}
	for _, t := range targets {
		pl := resolve(t, slices, pods, podSel)
		if pl.Node == "" {
			p.unplaced[t.Server] = true
			continue
		}
		p.placed[t.Server] = pl
		p.byNode[pl.Node] = append(p.byNode[pl.Node], t.Server)
		if pl.Pod != nil {
			p.couchPods[pl.Pod.Namespace+"/"+pl.Pod.Name] = true
		}
	}
	matches, err := pods.List(podSel)
	if err != nil {
		return p
	}
	reqs, _ := podSel.Requirements()
	for _, pod := range matches {
		for _, t := range targets {
			for _, r := range reqs {
				if pod.Labels[r.Key()] == t.Service {
					p.couchPods[pod.Namespace+"/"+pod.Name] = true
				}
			}
		}
	}
	return p
}
