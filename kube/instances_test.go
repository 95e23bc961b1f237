package kube_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/medic/couchwatch/kube"
	"github.com/medic/couchwatch/kube/kubetest"
)

// ownerKey is the owner label of an instance (its namespace by default).
func ownerKey(instance string) string { return "couchwatch.medic.org/flagged-by." + instance }

// valueOf is the taint (and owner label) value naming server: the name if it
// is a valid label value, else its Service name.
func valueOf(server string) string {
	if len(server) <= 63 {
		return server
	}
	svc, _, _ := strings.Cut(server, ".")
	return svc
}

func taintValue(n *corev1.Node) string {
	for _, t := range n.Spec.Taints {
		if t.Key == taintKey {
			return t.Value
		}
	}
	return ""
}

// settle waits until r has run two more flag passes than it had, poking it
// with loads between polls. Node changes reach a controller's cache in
// resourceVersion order, so once it has processed its own latest write (the
// second pass starts after the pass that wrote), its cache holds every write
// made before that one.
func settle(t *testing.T, r *running, loads []kube.CouchLoad) {
	t.Helper()
	p := metric(t, r.reg, "couchwatch_kube_passes_total", "", "")
	kubetest.Eventually(t, wait, "two more flag passes", func(context.Context) (bool, error) {
		r.ctl.Update(loads)
		return metric(t, r.reg, "couchwatch_kube_passes_total", "", "") >= p+2, nil
	})
}

func assertFlagged(t *testing.T, c *cluster, node string, flagged, cleared int) {
	t.Helper()
	n, err := getNode(context.Background(), c.env.Client, node)
	if err != nil {
		t.Fatal(err)
	}
	if got := flagState(n); got != "flagged" {
		t.Errorf("%s is %s, want flagged", node, got)
	}
	for reason, want := range map[string]int{kube.EventFlagged: flagged, kube.EventCleared: cleared} {
		if got, err := events(context.Background(), c.env.Client, "default", "Node", node, reason); err != nil || got != want {
			t.Errorf("%s: %d %s events (%v), want %d", node, got, reason, err, want)
		}
	}
}

// Two CHT instances (one namespace each) on separate hosts of one cluster:
// neither clears the other's flag as stale, so they do not flag and clear in turn.
func TestTwoInstancesDoNotFight(t *testing.T) {
	a, b := newCluster(t, 2), newCluster(t, 2)
	cs := a.env.Client
	clk := clocktesting.NewFakeClock(time.Now())
	cfgA, cfgB := a.config("prod-0"), b.config("staging-0")
	ra, rb := start(t, cs, cfgA, a.servers, clk), start(t, cs, cfgB, b.servers, clk)
	waitLeader(t, ra.ctl)
	waitLeader(t, rb.ctl)

	degrade(clk, cfgA, a, []*kube.Controller{ra.ctl}, 0)
	waitFlag(t, cs, a.nodes[0], "flagged")
	waitEvents(t, cs, "default", "Node", a.nodes[0], kube.EventFlagged, 1)
	// The other instance flags one of its own hosts after that, then settles:
	// its cache has seen the first flag for at least one whole pass.
	degrade(clk, cfgB, b, []*kube.Controller{rb.ctl}, 1)
	waitFlag(t, cs, b.nodes[1], "flagged")
	waitEvents(t, cs, "default", "Node", b.nodes[1], kube.EventFlagged, 1)
	settle(t, rb, b.loads(1))
	settle(t, ra, a.loads(0))

	assertFlagged(t, a, a.nodes[0], 1, 0)
	assertFlagged(t, b, b.nodes[1], 1, 0)
	for _, x := range []struct {
		name   string
		r      *running
		action string
		want   float64
	}{{"prod", ra, "set", 1}, {"prod", ra, "clear", 0}, {"staging", rb, "set", 1}, {"staging", rb, "clear", 0}} {
		if got := metric(t, x.r.reg, "couchwatch_kube_flags_total", "action", x.action); got != x.want {
			t.Errorf("%s: flags %s = %v, want %v", x.name, x.action, got, x.want)
		}
	}
	for _, r := range []*running{ra, rb} {
		if got := metric(t, r.reg, "couchwatch_kube_flagged_nodes", "", ""); got != 1 {
			t.Errorf("flagged nodes = %v, want 1 (its own only)", got)
		}
	}

	// Each instance clears its own flag when its CouchDB cools, and only that.
	calm(clk, cfgA, a, []*kube.Controller{ra.ctl})
	waitFlag(t, cs, a.nodes[0], "clear")
	waitEvents(t, cs, "default", "Node", a.nodes[0], kube.EventCleared, 1)
	settle(t, ra, a.loads())
	assertFlagged(t, b, b.nodes[1], 1, 0)
}

// Two instances with a CouchDB each on the same host: the host stays flagged
// while either needs it, and is cleared only when neither does.
func TestSharedHostFlaggedWhileAnyInstanceNeedsIt(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	a := &cluster{env: env, ns: env.Namespace(t)}
	b := &cluster{env: env, ns: env.Namespace(t)}
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("%s-shared-%d", a.ns, i)
		env.CreateNode(t, node, map[string]string{"kubetest/group": a.ns})
		for _, c := range []*cluster{a, b} {
			svc := fmt.Sprintf("couchdb-%d", i)
			pod := env.CreatePod(t, c.ns, kubetest.PodSpec{Name: "cht-" + svc, Node: node, Labels: map[string]string{"cht.service": svc}})
			env.CreateService(t, c.ns, svc, map[string]string{"cht.service": svc})
			env.CreateEndpointSlice(t, c.ns, svc, pod)
			c.nodes = append(c.nodes, node)
			c.pods = append(c.pods, pod)
			c.servers = append(c.servers, fmt.Sprintf("%s.%s.svc.cluster.local", svc, c.ns))
		}
	}
	cs := env.Client
	host := a.nodes[0]
	clk := clocktesting.NewFakeClock(time.Now())
	cfgA, cfgB := a.config("prod-0"), b.config("staging-0")
	ra, rb := start(t, cs, cfgA, a.servers, clk), start(t, cs, cfgB, b.servers, clk)
	waitLeader(t, ra.ctl)
	waitLeader(t, rb.ctl)

	owners := func(n *corev1.Node) string {
		var out []string
		for _, c := range []*cluster{a, b} {
			if v, ok := n.Labels[ownerKey(c.ns)]; ok {
				out = append(out, c.ns+"="+v)
			}
		}
		return strings.Join(out, ",")
	}
	waitOwners := func(want, taint string) {
		t.Helper()
		kubetest.Eventually(t, wait, fmt.Sprintf("%s owned by %q, taint %q", host, want, taint), func(ctx context.Context) (bool, error) {
			n, err := getNode(ctx, cs, host)
			return err == nil && owners(n) == want && taintValue(n) == taint && flagState(n) == map[bool]string{true: "flagged", false: "clear"}[want != ""], err
		})
	}

	degrade(clk, cfgA, a, []*kube.Controller{ra.ctl}, 0)
	va, vb := valueOf(a.servers[0]), valueOf(b.servers[0])
	waitOwners(a.ns+"="+va, va)
	// The second instance needs the same host: it adds its owner label and
	// leaves the taint naming the first instance's CouchDB.
	degrade(clk, cfgB, b, []*kube.Controller{rb.ctl}, 0)
	waitOwners(a.ns+"="+va+","+b.ns+"="+vb, va)
	waitEvents(t, cs, "default", "Node", host, kube.EventFlagged, 2)

	// The first cools: its owner label goes, the host stays flagged for the second.
	calm(clk, cfgA, a, []*kube.Controller{ra.ctl})
	waitOwners(b.ns+"="+vb, vb)
	waitEvents(t, cs, a.ns, "Pod", a.pods[0].Name, kube.EventCleared, 1)
	settle(t, ra, a.loads())
	settle(t, rb, b.loads(0))
	n, _ := getNode(context.Background(), cs, host)
	if owners(n) != b.ns+"="+vb || flagState(n) != "flagged" {
		t.Fatalf("after the first instance cooled: owners %q, %s; want the second's only, flagged", owners(n), flagState(n))
	}

	// The second cools too: nobody needs the flag, every mark goes.
	calm(clk, cfgB, b, []*kube.Controller{rb.ctl})
	waitOwners("", "")
	waitEvents(t, cs, "default", "Node", host, kube.EventCleared, 2)
	for _, r := range []*running{ra, rb} {
		for action, want := range map[string]float64{"set": 1, "clear": 1} {
			if got := metric(t, r.reg, "couchwatch_kube_flags_total", "action", action); got != want {
				t.Errorf("flags %s = %v, want %v", action, got, want)
			}
		}
	}
	for _, c := range []*cluster{a, b} {
		for _, other := range c.nodes[1:] {
			if n, err := getNode(context.Background(), cs, other); err != nil || flagState(n) != "clear" {
				t.Errorf("%s: %v, want clear", other, err)
			}
		}
	}
}
