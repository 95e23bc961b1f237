package kube

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	me    = "prod"
	other = "staging"
)

func owner(inst string) string { return "couchwatch.medic.org/flagged-by." + inst }

// flaggedNode is a node carrying the shared marks (taint value v) and the
// owner labels of owners (instance -> value).
func flaggedNode(name, v string, owners map[string]string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "3", Labels: map[string]string{}}}
	if v != "" {
		n.Labels["couchwatch.medic.org/couchdb-load"] = LoadHigh
		n.Spec.Taints = []corev1.Taint{{Key: "couchwatch.medic.org/couchdb-saturated", Value: v, Effect: corev1.TaintEffectPreferNoSchedule}}
		n.Status.Conditions = []corev1.NodeCondition{{Type: ConditionType, Status: corev1.ConditionTrue}}
	}
	for k, val := range owners {
		n.Labels[owner(k)] = val
	}
	return n
}

func TestSharedFor(t *testing.T) {
	taint := func(v string) *corev1.Taint { return &corev1.Taint{Value: v} }
	tests := []struct {
		name string
		m    nodeMarks
		want flagSpec
		out  shared
	}{
		{name: "first owner sets its value", want: flagSpec{On: true, Server: "c1"}, out: shared{On: true, Value: "c1"}},
		{name: "last owner leaves: off", m: nodeMarks{Taint: taint("c1"), Owners: map[string]string{me: "c1"}}, out: shared{}},
		{name: "second owner keeps the first's value", m: nodeMarks{Taint: taint("s1"), Owners: map[string]string{other: "s1"}},
			want: flagSpec{On: true, Server: "c1"}, out: shared{On: true, Value: "s1"}},
		{name: "leaving owner hands the value to the one left", m: nodeMarks{Taint: taint("c1"), Owners: map[string]string{me: "c1", other: "s1"}},
			out: shared{On: true, Value: "s1"}},
		{name: "other's flag stays on when this instance never owned it", m: nodeMarks{Taint: taint("s1"), Owners: map[string]string{other: "s1"}},
			out: shared{On: true, Value: "s1"}},
		{name: "a value no owner names is replaced by the writer's", m: nodeMarks{Taint: taint("gone"), Owners: map[string]string{other: "s1"}},
			want: flagSpec{On: true, Server: "c1"}, out: shared{On: true, Value: "c1"}},
		{name: "else by the first remaining owner's", m: nodeMarks{Taint: taint("gone"), Owners: map[string]string{"uat": "u1", other: "s1", me: "c1"}},
			out: shared{On: true, Value: "s1"}},
		{name: "legacy flag without owners is cleared", m: nodeMarks{Taint: taint("c1"), Label: LoadHigh}, out: shared{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sharedFor(tc.m, me, tc.want); got != tc.out {
				t.Fatalf("sharedFor = %+v, want %+v", got, tc.out)
			}
		})
	}
}

func TestViews(t *testing.T) {
	c := &Controller{cfg: DefaultConfig(), instance: me, targets: []target{{Server: "c1", Service: "c1"}, {Server: "c2", Service: "c2"}}}
	byNode := map[string][]string{"n1": {"c1"}, "n2": {"c2"}}
	tests := []struct {
		name  string
		node  *corev1.Node
		dry   map[string]bool
		views []nodeView
	}{
		{name: "own flag", node: flaggedNode("n1", "c1", map[string]string{me: "c1"}),
			views: []nodeView{{Name: "n1", Flagged: true, TaintFor: "c1", Servers: []string{"c1"}}}},
		{name: "own flag whose server is gone", node: flaggedNode("n9", "old", map[string]string{me: "old"}),
			views: []nodeView{{Name: "n9", Flagged: true}}},
		{name: "another instance's flag on a host of ours is not ours", node: flaggedNode("n1", "s1", map[string]string{other: "s1"}),
			views: []nodeView{{Name: "n1", Servers: []string{"c1"}}}},
		{name: "another instance's flag elsewhere is invisible", node: flaggedNode("n9", "s1", map[string]string{other: "s1"})},
		{name: "legacy flag naming our server is adopted", node: flaggedNode("n9", "c2", nil),
			views: []nodeView{{Name: "n9", Flagged: true, TaintFor: "c2"}}},
		{name: "legacy flag on a host of ours is adopted", node: flaggedNode("n1", "s1", nil),
			views: []nodeView{{Name: "n1", Flagged: true, Servers: []string{"c1"}}}},
		{name: "legacy flag naming nobody of ours elsewhere is left alone", node: flaggedNode("n9", "s1", nil)},
		{name: "dry run pretends", node: flaggedNode("n2", "", nil), dry: map[string]bool{"n2": true},
			views: []nodeView{{Name: "n2", Flagged: true, Servers: []string{"c2"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.dry = tc.dry
			views, byName, hosts := c.views([]*corev1.Node{tc.node}, byNode)
			if !reflect.DeepEqual(views, tc.views) {
				t.Fatalf("views = %+v, want %+v", views, tc.views)
			}
			if byName[tc.node.Name] != tc.node {
				t.Fatalf("byName misses %s", tc.node.Name)
			}
			if want := len(byNode[tc.node.Name]); hosts != want {
				t.Fatalf("couch hosts = %d, want %d", hosts, want)
			}
		})
	}
}

func TestPlace(t *testing.T) {
	sel, _ := labels.Parse("cht.service")
	targets := []target{{Server: "c1", Service: "couchdb-1"}, {Server: "c2", Service: "couchdb-2"}, {Server: "c3", Service: "couchdb-3"}}
	pods := fakePods{
		"couch-a": pod("couch-a", "node-a", map[string]string{"cht.service": "couchdb-1"}),
		"couch-b": pod("couch-b", "node-a", map[string]string{"cht.service": "couchdb-2"}),
		"old-b":   pod("old-b", "node-z", map[string]string{"cht.service": "couchdb-2"}),
		"api":     pod("api", "node-a", map[string]string{"cht.service": "api"}),
	}
	slices := []*discoveryv1.EndpointSlice{slice("couchdb-1", ep("couch-a", "", true)), slice("couchdb-2", ep("couch-b", "", true))}
	p := place(targets, slices, pods, sel)
	if got := p.byNode["node-a"]; !reflect.DeepEqual(got, []string{"c1", "c2"}) {
		t.Errorf("node-a hosts %v, want [c1 c2]", got)
	}
	if !reflect.DeepEqual(p.unplaced, map[string]bool{"c3": true}) {
		t.Errorf("unplaced = %v, want c3", p.unplaced)
	}
	var couch []string
	for k := range p.couchPods {
		couch = append(couch, k)
	}
	sort.Strings(couch)
	// old-b is no endpoint, but the selector names it as couchdb-2: never evicted.
	if want := []string{"ns/couch-a", "ns/couch-b", "ns/old-b"}; !reflect.DeepEqual(couch, want) {
		t.Errorf("CouchDB pods = %v, want %v", couch, want)
	}
	if p.placed["c1"].Pod.Name != "couch-a" {
		t.Errorf("c1 placed by %v", p.placed["c1"].Pod)
	}
}

// passController is a controller over a fake clientset whose listers hold objs.
func passController(t *testing.T, mutate func(*Config), objs ...runtime.Object) (*Controller, *fake.Clientset, *clocktesting.FakeClock, *bytes.Buffer) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Namespace, cfg.Instance, cfg.Identity = "ns", me, "test"
	if mutate != nil {
		mutate(&cfg)
	}
	cs := fake.NewClientset(objs...)
	clk := clocktesting.NewFakeClock(time.Unix(1e9, 0))
	logs := &bytes.Buffer{}
	c, err := NewController(cfg, cs, []string{"couchdb-1", "couchdb-2", "couchdb-3"}, slog.New(slog.NewTextHandler(logs, nil)), nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	ni, pi, si := idx(), idx(), idx()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Node:
			err = ni.Add(o)
		case *corev1.Pod:
			err = pi.Add(o)
		case *discoveryv1.EndpointSlice:
			err = si.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c.nodes, c.pods, c.slices = corelisters.NewNodeLister(ni), corelisters.NewPodLister(pi), discoverylisters.NewEndpointSliceLister(si)
	c.dry = map[string]bool{}
	return c, cs, clk, logs
}

// nodeState sums up our keys on a node: taint value, load label, owners.
func nodeState(t *testing.T, cs *fake.Clientset, name string) string {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := DefaultConfig().marks(n)
	var parts []string
	if m.Taint != nil {
		parts = append(parts, "taint="+m.Taint.Value)
	}
	if m.Condition != nil {
		parts = append(parts, "cond="+string(m.Condition.Status))
	}
	var owners []string
	for k, v := range m.Owners {
		owners = append(owners, k+":"+v)
	}
	sort.Strings(owners)
	if len(owners) > 0 {
		parts = append(parts, "owners="+strings.Join(owners, ","))
	}
	return strings.Join(parts, " ")
}

func TestPass(t *testing.T) {
	// Three hosts, one CouchDB of ours on each; n9 hosts only another instance's.
	objs := func(extra ...runtime.Object) []runtime.Object {
		out := []runtime.Object{}
		for i, n := range []string{"n1", "n2", "n3"} {
			svc := "couchdb-" + string(rune('1'+i))
			p := pod("cht-"+svc, n, map[string]string{"cht.service": svc})
			p.ResourceVersion = "1"
			out = append(out, p, slice(svc, ep(p.Name, "", true)))
		}
		seen := map[string]bool{}
		for _, o := range extra {
			if n, ok := o.(*corev1.Node); ok {
				seen[n.Name] = true
			}
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			if !seen[n] {
				out = append(out, flaggedNode(n, "", nil))
			}
		}
		return append(out, extra...)
	}
	tests := []struct {
		name  string
		nodes []runtime.Object
		hot   []string // servers Degraded for FlagAfter
		dry   bool
		want  map[string]string // node -> nodeState after the pass
		logs  string
	}{
		{name: "another instance's flag on a host without our CouchDB stays",
			nodes: []runtime.Object{flaggedNode("n9", "s1", map[string]string{other: "s1"})},
			want:  map[string]string{"n9": "taint=s1 cond=True owners=staging:s1", "n1": ""}},
		{name: "our stale flag goes, the taint stays for the other owner",
			nodes: []runtime.Object{flaggedNode("n9", "old", map[string]string{me: "old", other: "s1"})},
			want:  map[string]string{"n9": "taint=s1 cond=True owners=staging:s1"}},
		{name: "our stale flag alone goes with every mark",
			nodes: []runtime.Object{flaggedNode("n9", "old", map[string]string{me: "old"})},
			want:  map[string]string{"n9": "cond=False"}},
		{name: "a hot CouchDB on a host another instance flags adds our owner label",
			nodes: []runtime.Object{flaggedNode("n1", "s1", map[string]string{other: "s1"})}, hot: []string{"couchdb-1"},
			want: map[string]string{"n1": "taint=s1 cond=True owners=prod:couchdb-1,staging:s1"}},
		{name: "budget: one flag of ours at a time",
			hot:  []string{"couchdb-1", "couchdb-2"},
			want: map[string]string{"n1": "taint=couchdb-1 cond=True owners=prod:couchdb-1", "n2": ""},
			logs: "not flagging: budget exhausted"},
		{name: "another instance's flag does not use our budget",
			nodes: []runtime.Object{flaggedNode("n2", "s1", map[string]string{other: "s1"})}, hot: []string{"couchdb-1"},
			want: map[string]string{"n1": "taint=couchdb-1 cond=True owners=prod:couchdb-1", "n2": "taint=s1 cond=True owners=staging:s1"}},
		{name: "legacy flag naming our server is adopted",
			nodes: []runtime.Object{flaggedNode("n1", "couchdb-1", nil)}, hot: []string{"couchdb-1"},
			want: map[string]string{"n1": "taint=couchdb-1 cond=True owners=prod:couchdb-1"}},
		{name: "dry run writes nothing",
			hot: []string{"couchdb-1"}, dry: true,
			want: map[string]string{"n1": ""}, logs: "dry run: would flag node"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, cs, clk, logs := passController(t, func(cfg *Config) { cfg.DryRun = tc.dry; cfg.MaxFlagged = 1 }, objs(tc.nodes...)...)
			c.guard.dryRun = tc.dry
			loads := func() []CouchLoad {
				var out []CouchLoad
				for _, s := range []string{"couchdb-1", "couchdb-2", "couchdb-3"} {
					l := CouchLoad{Server: s, Known: true, Score: 0.6}
					for _, h := range tc.hot {
						if h == s {
							l.Degraded, l.Score = true, 0.9
						}
					}
					out = append(out, l)
				}
				return out
			}
			c.Update(loads())
			clk.Step(c.cfg.FlagAfter)
			c.Update(loads())
			c.pass(context.Background())
			for node, want := range tc.want {
				if got := nodeState(t, cs, node); got != want {
					t.Errorf("%s: %q, want %q", node, got, want)
				}
			}
			if !strings.Contains(logs.String(), tc.logs) {
				t.Errorf("logs lack %q:\n%s", tc.logs, logs)
			}
			if got := testutilValue(c.m.passes); got != 1 {
				t.Errorf("passes = %v, want 1", got)
			}
		})
	}
}
