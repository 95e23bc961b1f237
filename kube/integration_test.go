package kube_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/medic/couchwatch/internal/testenv"
	"github.com/medic/couchwatch/kube"
	"github.com/medic/couchwatch/kube/kubetest"
)

// One control plane (with a scheduler) for every test in this binary.
var testEnv *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Main(m, kubetest.Options{Scheduler: true}, &testEnv))
}

const (
	taintKey = "couchwatch.medic.org/couchdb-saturated"
	labelKey = "couchwatch.medic.org/couchdb-load"
	wait     = 60 * time.Second // a bound on failure only: a busy CI machine is slow
)

// cluster is one test's CouchDB deployment: a node per CouchDB, a pod pinned
// to each, its Service and EndpointSlice.
type cluster struct {
	env     *kubetest.Env
	ns      string
	nodes   []string
	servers []string
	pods    []*corev1.Pod
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	env := kubetest.Require(t, testEnv)
	c := &cluster{env: env, ns: env.Namespace(t)}
	for i := 1; i <= n; i++ {
		node := fmt.Sprintf("%s-node-%d", c.ns, i)
		env.CreateNode(t, node, map[string]string{"kubetest/group": c.ns})
		svc := fmt.Sprintf("couchdb-%d", i)
		pod := env.CreatePod(t, c.ns, kubetest.PodSpec{Name: "cht-" + svc, Node: node, Labels: map[string]string{"cht.service": svc}})
		env.CreateService(t, c.ns, svc, map[string]string{"cht.service": svc})
		env.CreateEndpointSlice(t, c.ns, svc, pod)
		c.nodes = append(c.nodes, node)
		c.pods = append(c.pods, pod)
		c.servers = append(c.servers, fmt.Sprintf("%s.%s.svc.cluster.local", svc, c.ns))
	}
	return c
}

func (c *cluster) config(identity string) kube.Config {
	cfg := kube.DefaultConfig()
	cfg.Mode = kube.ModeOn
	cfg.Namespace = c.ns
	cfg.Identity = identity
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 3*time.Second, 2*time.Second, 200*time.Millisecond
	return cfg
}

// loads reports every server calm, except those in degraded.
func (c *cluster) loads(degraded ...int) []kube.CouchLoad {
	out := make([]kube.CouchLoad, len(c.servers))
	for i, s := range c.servers {
		out[i] = kube.CouchLoad{Server: s, Score: 0.1, Known: true}
	}
	for _, i := range degraded {
		out[i].Degraded, out[i].Score = true, 0.95
	}
	return out
}

type running struct {
	ctl    *kube.Controller
	m      *kube.Metrics
	reg    *prometheus.Registry
	logs   *testenv.LogBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func start(t *testing.T, client kubernetes.Interface, cfg kube.Config, servers []string, clk *clocktesting.FakeClock) *running {
	t.Helper()
	logs := &testenv.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	m, err := kube.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := kube.NewController(cfg, client, servers, log.With("identity", cfg.Identity), m, clk)
	if err != nil {
		t.Fatalf("NewController: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{ctl: ctl, m: m, reg: reg, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- ctl.Run(ctx) }()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("controller %s log:\n%s", cfg.Identity, logs.String())
		}
	})
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Run did not return %s after cancel", wait)
		}
	})
}

func waitLeader(t *testing.T, ctl *kube.Controller) {
	t.Helper()
	kubetest.Eventually(t, wait, "leadership", func(context.Context) (bool, error) { return ctl.IsLeader(), nil })
}

// degrade feeds a sustained Degraded load for server i, stepping the clock past FlagAfter.
func degrade(clk *clocktesting.FakeClock, cfg kube.Config, c *cluster, ctls []*kube.Controller, i ...int) {
	for _, ctl := range ctls {
		ctl.Update(c.loads(i...))
	}
	clk.Step(cfg.FlagAfter)
	for _, ctl := range ctls {
		ctl.Update(c.loads(i...))
	}
}

func calm(clk *clocktesting.FakeClock, cfg kube.Config, c *cluster, ctls []*kube.Controller) {
	for _, ctl := range ctls {
		ctl.Update(c.loads())
	}
	clk.Step(cfg.ClearAfter)
	for _, ctl := range ctls {
		ctl.Update(c.loads())
	}
}

func getNode(ctx context.Context, cs kubernetes.Interface, name string) (*corev1.Node, error) {
	return cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

// flagState is "flagged", "clear" or "partial" (some of our marks only).
func flagState(n *corev1.Node) string {
	taint, label, cond := false, n.Labels[labelKey] == "high", false
	for _, t := range n.Spec.Taints {
		if t.Key == taintKey && t.Effect == corev1.TaintEffectPreferNoSchedule {
			taint = true
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == kube.ConditionType && c.Status == corev1.ConditionTrue {
			cond = true
		}
	}
	switch {
	case taint && label && cond:
		return "flagged"
	case !taint && !label && !cond && n.Labels[labelKey] == "":
		return "clear"
	}
	return "partial"
}

func waitFlag(t *testing.T, cs kubernetes.Interface, node, want string) *corev1.Node {
	t.Helper()
	var n *corev1.Node
	kubetest.Eventually(t, wait, node+" "+want, func(ctx context.Context) (bool, error) {
		var err error
		n, err = getNode(ctx, cs, node)
		return err == nil && flagState(n) == want, err
	})
	return n
}

func events(ctx context.Context, cs kubernetes.Interface, ns, kind, name, reason string) (int, error) {
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name, "reason": reason}.AsSelector().String()
	list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

func waitEvents(t *testing.T, cs kubernetes.Interface, ns, kind, name, reason string, want int) {
	t.Helper()
	kubetest.Eventually(t, wait, fmt.Sprintf("%d %s event(s) on %s %s", want, reason, kind, name), func(ctx context.Context) (bool, error) {
		n, err := events(ctx, cs, ns, kind, name, reason)
		return n == want, err
	})
}

func TestFlagsAppearAndClear(t *testing.T) {
	c := newCluster(t, 3)
	cs := c.env.Client
	cfg := c.config("solo")
	clk := clocktesting.NewFakeClock(time.Now())
	r := start(t, cs, cfg, c.servers, clk)
	waitLeader(t, r.ctl)

	// Degraded but not yet for FlagAfter: nothing.
	r.ctl.Update(c.loads(0, 1))
	clk.Step(cfg.FlagAfter - time.Second)
	r.ctl.Update(c.loads(0, 1))
	// Now server 1 stays Degraded long enough; server 2 recovers.
	clk.Step(time.Second)
	r.ctl.Update(c.loads(0))
	n := waitFlag(t, cs, c.nodes[0], "flagged")
	for _, tt := range n.Spec.Taints {
		if tt.Key == taintKey && tt.Value != c.servers[0] {
			t.Errorf("taint value %q, want %q", tt.Value, c.servers[0])
		}
	}
	waitEvents(t, cs, "default", "Node", c.nodes[0], kube.EventFlagged, 1)
	waitEvents(t, cs, c.ns, "Pod", c.pods[0].Name, kube.EventFlagged, 1)
	for _, other := range c.nodes[1:] {
		if n, err := getNode(context.Background(), cs, other); err != nil || flagState(n) != "clear" {
			t.Fatalf("%s: %v %v, want clear", other, err, n.Spec.Taints)
		}
	}
	if got := metric(t, r.reg, "couchwatch_kube_flags_total", "action", "set"); got != 1 {
		t.Errorf("flags set = %v, want 1", got)
	}

	// Budget: a second saturated CouchDB is not flagged while one node is (max 1).
	degrade(clk, cfg, c, []*kube.Controller{r.ctl}, 0, 1)
	kubetest.Eventually(t, wait, "budget refusal logged", func(context.Context) (bool, error) {
		return strings.Contains(r.logs.String(), "not flagging: budget exhausted"), nil
	})
	if got := metric(t, r.reg, "couchwatch_kube_flagged_nodes", "", ""); got != 1 {
		t.Errorf("flagged nodes = %v, want 1", got)
	}

	// Cool-down below ClearBelow: every mark goes, the condition turns False.
	calm(clk, cfg, c, []*kube.Controller{r.ctl})
	n = waitFlag(t, cs, c.nodes[0], "clear")
	found := false
	for _, cond := range n.Status.Conditions {
		if cond.Type == kube.ConditionType {
			found = cond.Status == corev1.ConditionFalse
		}
	}
	if !found {
		t.Errorf("condition after clear: %+v, want %s=False", n.Status.Conditions, kube.ConditionType)
	}
	waitEvents(t, cs, "default", "Node", c.nodes[0], kube.EventCleared, 1)
	waitEvents(t, cs, c.ns, "Pod", c.pods[0].Name, kube.EventCleared, 1)
	if n, _ := getNode(context.Background(), cs, c.nodes[1]); flagState(n) != "clear" {
		t.Errorf("%s was flagged beyond the budget", c.nodes[1])
	}
}

func TestConflictingConcurrentWriter(t *testing.T) {
	c := newCluster(t, 2)
	cs := c.env.Client
	cfg := c.config("solo")
	clk := clocktesting.NewFakeClock(time.Now())
	r := start(t, cs, cfg, c.servers, clk)
	waitLeader(t, r.ctl)
	node := c.nodes[0]

	// Another writer rewrites the same node's labels and taints as fast as it can.
	const rounds = 40
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		for i := range rounds {
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				n, err := getNode(ctx, cs, node)
				if err != nil {
					return err
				}
				n.Labels["team.local/round"] = fmt.Sprint(i)
				var taints []corev1.Taint
				for _, tt := range n.Spec.Taints {
					if tt.Key != "team.local/busy" {
						taints = append(taints, tt)
					}
				}
				n.Spec.Taints = append(taints, corev1.Taint{Key: "team.local/busy", Value: fmt.Sprint(i), Effect: corev1.TaintEffectPreferNoSchedule})
				_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				t.Errorf("other writer, round %d: %v", i, err)
				return
			}
			if i == rounds/4 {
				degrade(clk, cfg, c, []*kube.Controller{r.ctl}, 0)
			}
		}
	}()
	wg.Wait()
	n := waitFlag(t, cs, node, "flagged")
	last := fmt.Sprint(rounds - 1)
	busy := ""
	for _, tt := range n.Spec.Taints {
		if tt.Key == "team.local/busy" {
			busy = tt.Value
		}
	}
	if n.Labels["team.local/round"] != last || busy != last {
		t.Fatalf("other writer's last round lost: label %q taint %q, want %q", n.Labels["team.local/round"], busy, last)
	}

	// Someone removes our label by hand: the next pass puts it back.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := getNode(context.Background(), cs, node)
		if err != nil {
			return err
		}
		delete(n.Labels, labelKey)
		_, err = cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFlag(t, cs, node, "flagged")
	waitEvents(t, cs, "default", "Node", node, kube.EventFlagged, 1) // a repair is not a transition
}

func TestLeaderChangeMidFlag(t *testing.T) {
	c := newCluster(t, 3)
	cs := c.env.Client
	cfgA, cfgB := c.config("replica-a"), c.config("replica-b")
	clk := clocktesting.NewFakeClock(time.Now())
	a := start(t, cs, cfgA, c.servers, clk)
	waitLeader(t, a.ctl)
	b := start(t, cs, cfgB, c.servers, clk)
	both := []*kube.Controller{a.ctl, b.ctl}

	degrade(clk, cfgA, c, both, 0)
	waitFlag(t, cs, c.nodes[0], "flagged")
	// The Event follows the taint; stopping the leader between the two cancels it
	// (nothing is written after the lease is given up), so wait for it.
	waitEvents(t, cs, "default", "Node", c.nodes[0], kube.EventFlagged, 1)
	if b.ctl.IsLeader() {
		t.Fatal("two leaders")
	}

	// The leader goes away mid-flag; it releases the Lease and stops writing.
	a.stop(t)
	if a.ctl.IsLeader() {
		t.Fatal("stopped replica still claims leadership")
	}
	if got := metric(t, a.reg, "couchwatch_kube_leader", "", ""); got != 0 {
		t.Fatalf("stopped replica leader gauge = %v", got)
	}
	waitLeader(t, b.ctl)

	// The new leader keeps the flag without re-flagging, then clears it.
	b.ctl.Update(c.loads(0))
	calm(clk, cfgB, c, []*kube.Controller{b.ctl})
	waitFlag(t, cs, c.nodes[0], "clear")
	waitEvents(t, cs, "default", "Node", c.nodes[0], kube.EventCleared, 1)
	if n, _ := events(context.Background(), cs, "default", "Node", c.nodes[0], kube.EventFlagged); n != 1 {
		t.Errorf("%d flag events, want 1 (the new leader must not re-flag)", n)
	}
	if got := metric(t, b.reg, "couchwatch_kube_flags_total", "action", "set"); got != 0 {
		t.Errorf("new leader set %v flags, want 0", got)
	}
	if got := metric(t, b.reg, "couchwatch_kube_flags_total", "action", "clear"); got != 1 {
		t.Errorf("new leader cleared %v flags, want 1", got)
	}
}

func TestRBACServiceAccount(t *testing.T) {
	c := newCluster(t, 2)
	env := c.env
	rbac := kubetest.RepoPath(t, kubetest.RBACFile)
	sa := env.ApplyRBAC(t, rbac, c.ns, true)
	cs := env.ServiceAccountClient(t, c.ns, sa)

	// A stateless API pod beside the saturated CouchDB, with a PDB that allows one disruption.
	api := env.CreatePod(t, c.ns, kubetest.PodSpec{Name: "cht-api-1", Node: c.nodes[0], Labels: map[string]string{"cht.service": "api"}})
	env.CreatePDB(t, c.ns, "api", map[string]string{"cht.service": "api"}, 1)

	cfg := c.config("rbac")
	cfg.Rebalance = true
	clk := clocktesting.NewFakeClock(time.Now())
	r := start(t, cs, cfg, c.servers, clk)
	waitLeader(t, r.ctl)
	degrade(clk, cfg, c, []*kube.Controller{r.ctl}, 0)
	waitFlag(t, env.Client, c.nodes[0], "flagged")
	waitEvents(t, env.Client, c.ns, "Pod", c.pods[0].Name, kube.EventFlagged, 1)
	kubetest.Eventually(t, wait, "api pod evicted", func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(c.ns).Get(ctx, api.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil), nil
	})
	if p, err := env.Client.CoreV1().Pods(c.ns).Get(context.Background(), c.pods[0].Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("CouchDB pod touched: %v %v", err, p.DeletionTimestamp)
	}
	calm(clk, cfg, c, []*kube.Controller{r.ctl})
	waitFlag(t, env.Client, c.nodes[0], "clear")
	if got := metric(t, r.reg, "couchwatch_kube_evictions_total", "result", "evicted"); got != 1 {
		t.Errorf("evictions = %v, want 1", got)
	}
	for _, verb := range []string{"get", "list", "watch", "patch", "create", "update", "evict"} {
		if got := metric(t, r.reg, "couchwatch_kube_api_errors_total", "verb", verb); got != 0 {
			t.Errorf("%v API errors for %s as the service account: RBAC too tight", got, verb)
		}
	}

	// And nothing else.
	ctx := kubetest.Context(t, wait)
	denied := map[string]func() error{
		"delete node": func() error { return cs.CoreV1().Nodes().Delete(ctx, c.nodes[1], metav1.DeleteOptions{}) },
		"update node": func() error {
			n, err := env.Client.CoreV1().Nodes().Get(ctx, c.nodes[1], metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		},
		"list secrets": func() error { _, err := cs.CoreV1().Secrets(c.ns).List(ctx, metav1.ListOptions{}); return err },
		"delete pod":   func() error { return cs.CoreV1().Pods(c.ns).Delete(ctx, c.pods[1].Name, metav1.DeleteOptions{}) },
		"create pod": func() error {
			_, err := cs.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
			return err
		},
		"patch pod status": func() error {
			_, err := cs.CoreV1().Pods(c.ns).Patch(ctx, c.pods[1].Name, "application/merge-patch+json", []byte(`{"status":{}}`), metav1.PatchOptions{}, "status")
			return err
		},
		"delete events": func() error {
			return cs.CoreV1().Events(c.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		},
		"other lease": func() error {
			_, err := cs.CoordinationV1().Leases(c.ns).Get(ctx, "someone-else", metav1.GetOptions{})
			return err
		},
		"lease in another namespace": func() error {
			_, err := cs.CoordinationV1().Leases("default").Get(ctx, "couchwatch", metav1.GetOptions{})
			return err
		},
		"services": func() error { _, err := cs.CoreV1().Services(c.ns).List(ctx, metav1.ListOptions{}); return err },
	}
	for what, call := range denied {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
}

func TestRBACWithoutRebalanceCannotEvict(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	sa := env.ApplyRBAC(t, kubetest.RepoPath(t, kubetest.RBACFile), ns, false)
	cs := env.ServiceAccountClient(t, ns, sa)
	p := env.CreatePod(t, ns, kubetest.PodSpec{Name: "api", Labels: map[string]string{"cht.service": "api"}})
	err := cs.PolicyV1().Evictions(ns).Evict(kubetest.Context(t, wait), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: ns}})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("evict without the rebalance binding: %v, want Forbidden", err)
	}
}

func TestSchedulerAvoidsFlaggedNode(t *testing.T) {
	c := newCluster(t, 3)
	if !c.env.SchedulerRunning() {
		t.Fatalf("kube-scheduler is not running:\n%s", c.env.Log())
	}
	cs := c.env.Client
	cfg := c.config("sched")
	clk := clocktesting.NewFakeClock(time.Now())
	r := start(t, cs, cfg, c.servers, clk)
	waitLeader(t, r.ctl)
	degrade(clk, cfg, c, []*kube.Controller{r.ctl}, 0)
	waitFlag(t, cs, c.nodes[0], "flagged")

	const pods = 9
	ctx := kubetest.Context(t, wait)
	for i := range pods {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cht-api-%d", i), Namespace: c.ns, Labels: map[string]string{"cht.service": "api"}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubetest/group": c.ns},
				Containers:   []corev1.Container{{Name: "api", Image: "api:kubetest"}},
			},
		}
		if _, err := cs.CoreV1().Pods(c.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	placed := map[string]int{}
	kubetest.Eventually(t, wait, "all API pods scheduled", func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "cht.service=api"})
		if err != nil {
			return false, err
		}
		clear(placed)
		for _, p := range list.Items {
			if p.Spec.NodeName == "" {
				return false, nil
			}
			placed[p.Spec.NodeName]++
		}
		return len(list.Items) == pods, nil
	})
	var lines []string
	for _, n := range c.nodes {
		lines = append(lines, fmt.Sprintf("%s=%d", n, placed[n]))
	}
	sort.Strings(lines)
	t.Logf("kube-scheduler placed %d new API pods with %s tainted PreferNoSchedule: %s", pods, c.nodes[0], strings.Join(lines, " "))
	if placed[c.nodes[0]] != 0 {
		t.Errorf("%d API pods landed on the flagged node %s, want 0", placed[c.nodes[0]], c.nodes[0])
	}
}

// metric reads one sample from reg (label "" for an unlabelled family).
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if match {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no sample %s{%s=%q}", name, label, value)
	return 0
}
