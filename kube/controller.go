package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
)

// resync re-asserts the flags this often even without any change, so a flag
// someone removed by hand comes back.
const resync = 30 * time.Second

// Controller flags Kubernetes nodes whose CouchDB is saturated.
type Controller struct {
	cfg      Config
	ns       string
	instance string // owner of this controller's flags
	identity string
	client   kubernetes.Interface
	log      *slog.Logger
	m        *Metrics
	clk      clock.Clock
	targets  []target
	evictSel labels.Selector
	podSel   labels.Selector

	mu    sync.Mutex // guards track
	track *tracker

	kick   chan struct{} // one pending pass, latest wins
	leader atomic.Bool
	events atomic.Uint64 // makes event names unique

	// Leader state: only touched while holding leadMu.
	leadMu  sync.Mutex
	guard   guard
	dry     map[string]bool // dry-run: the flag state we pretend to have written
	refused string          // last budget refusal logged
	nodes   corelisters.NodeLister
	pods    corelisters.PodLister
	slices  discoverylisters.EndpointSliceLister
	writer  *nodeWriter
}

// NewController validates cfg and maps every COUCHDB_SERVERS host to a Service
// in the watched namespace.
func NewController(cfg Config, client kubernetes.Interface, servers []string, log *slog.Logger, m *Metrics, clk clock.Clock) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kube config: %w", err)
	}
	if client == nil {
		return nil, errors.New("kube: nil client")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m, _ = NewMetrics(nil) // not registered: cannot fail
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	id, err := cfg.identity()
	if err != nil {
		return nil, err
	}
	inst, err := cfg.instance()
	if err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:      cfg,
		ns:       cfg.namespace(),
		instance: inst,
		identity: id,
		client:   client,
		log:      log,
		m:        m,
		clk:      clk,
		kick:     make(chan struct{}, 1),
		guard:    guard{maxFlagged: cfg.MaxFlagged, dryRun: cfg.DryRun},
	}
	c.evictSel, _ = labels.Parse(cfg.EvictSelector) // checked by Validate
	c.podSel, _ = labels.Parse(cfg.PodSelector)
	var errs []error
	var names []string
	for _, s := range servers {
		t, err := parseServer(s, c.ns)
		if err != nil {
			errs = append(errs, fmt.Errorf("COUCHDB_SERVERS: %w", err))
			continue
		}
		if t.Namespace != c.ns {
			errs = append(errs, fmt.Errorf("COUCHDB_SERVERS: server %q is in namespace %q, couchwatch watches %q (COUCHWATCH_KUBE_NAMESPACE)", s, t.Namespace, c.ns))
			continue
		}
		c.targets = append(c.targets, t)
		names = append(names, s)
	}
	if len(servers) == 0 {
		errs = append(errs, errors.New("COUCHDB_SERVERS: no server"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.track = newTracker(cfg, names)
	c.writer = &nodeWriter{client: client, cfg: cfg, instance: inst, clk: clk, m: m}
	return c, nil
}

// Update records the loads of one checks pass and asks for a flag pass. It
// never blocks on the cluster; only the latest request is kept.
func (c *Controller) Update(loads []CouchLoad) {
	c.mu.Lock()
	c.track.observe(c.clk.Now(), loads)
	c.mu.Unlock()
	c.poke()
}

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// IsLeader reports whether this replica holds the Lease and may write.
func (c *Controller) IsLeader() bool { return c.leader.Load() }

// Run watches nodes, pods and EndpointSlices, takes part in leader election
// and, while leading, flags and clears nodes. It returns when ctx ends (nil),
// or early with an error if the watches cannot start.
func (c *Controller) Run(ctx context.Context) error {
	nodeFactory := informers.NewSharedInformerFactory(c.client, 0)
	nsFactory := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithNamespace(c.ns))
	nodeInf := nodeFactory.Core().V1().Nodes()
	podInf := nsFactory.Core().V1().Pods()
	sliceInf := nsFactory.Discovery().V1().EndpointSlices()
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(any, any) { c.poke() },
		DeleteFunc: func(any) { c.poke() },
	}
	for name, inf := range map[string]cache.SharedIndexInformer{
		"nodes": nodeInf.Informer(), "pods": podInf.Informer(), "endpointslices": sliceInf.Informer(),
	} {
		if err := inf.SetWatchErrorHandlerWithContext(c.watchErrorHandler(name)); err != nil {
			return fmt.Errorf("watch %s: %w", name, err)
		}
		if _, err := inf.AddEventHandler(kick); err != nil {
			return fmt.Errorf("watch %s: %w", name, err)
		}
	}
	c.leadMu.Lock()
	c.nodes, c.pods, c.slices = nodeInf.Lister(), podInf.Lister(), sliceInf.Lister()
	c.leadMu.Unlock()

	nodeFactory.Start(ctx.Done())
	nsFactory.Start(ctx.Done())
	defer nodeFactory.Shutdown()
	defer nsFactory.Shutdown()
	for typ, ok := range nodeFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return c.syncError(ctx, typ.String())
		}
	}
	for typ, ok := range nsFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return c.syncError(ctx, typ.String())
		}
	}

	c.log.Info("kubernetes flagger started", "namespace", c.ns, "instance", c.instance, "identity", c.identity,
		"lease", c.cfg.LeaseName, "dry_run", c.cfg.DryRun, "rebalance", c.cfg.Rebalance)
	for ctx.Err() == nil {
		le, err := c.elector()
		if err != nil {
			return err
		}
		le.Run(ctx) // returns when ctx ends or the lease is lost
		c.leadMu.Lock()
		//lint:ignore SA2001 the empty section is the point: it waits for the leader loop to stop writing
		c.leadMu.Unlock()
		if ctx.Err() == nil {
			c.log.Warn("lost the lease: cluster writes stopped, standing by")
		}
	}
	return nil
}

// elector is a fresh leader elector on the Lease for one election round.
func (c *Controller) elector() (*leaderelection.LeaderElector, error) {
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metaFor(c.cfg.LeaseName, c.ns),
			Client:     c.client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: c.identity},
		},
		LeaseDuration:   c.cfg.LeaseDuration,
		RenewDeadline:   c.cfg.RenewDeadline,
		RetryPeriod:     c.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            "couchwatch",
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: c.lead,
			OnStoppedLeading: func() { c.setLeader(false) },
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	return le, nil
}

func (c *Controller) syncError(ctx context.Context, what string) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("watch %s: cache did not sync", what)
}

func (c *Controller) watchErrorHandler(what string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, _ *cache.Reflector, err error) {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return
		}
		c.m.apiError(verbWatch)
		c.log.Warn("kubernetes watch failed", "resource", what, "err", err)
	}
}

func (c *Controller) setLeader(on bool) {
	if c.leader.Swap(on) != on {
		c.m.setLeader(on)
		if on {
			c.log.Info("became leader", "identity", c.identity)
		} else {
			c.log.Info("not leader", "identity", c.identity)
		}
	}
}

// lead is the flag loop; it runs only under the leader's context, which
// client-go cancels the moment the lease cannot be renewed. Every write uses
// that context, so writes stop with it.
func (c *Controller) lead(ctx context.Context) {
	c.leadMu.Lock()
	defer c.leadMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	c.setLeader(true)
	defer c.setLeader(false)
	c.dry = map[string]bool{}
	c.refused = ""
	for {
		c.pass(ctx)
		t := c.clk.NewTimer(resync)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.kick:
		case <-t.C():
		}
		t.Stop()
	}
}

func verbFor(flag bool) string {
	if flag {
		return "flag"
	}
	return "clear"
}

// taintValueFor is the taint value naming server.
func (c *Controller) taintValueFor(server string) string {
	for _, t := range c.targets {
		if t.Server == server {
			return taintValue(t)
		}
	}
	return ""
}

// serverFor maps a taint value back to a configured server ("" if none).
func (c *Controller) serverFor(value string) string {
	for _, t := range c.targets {
		if taintValue(t) == value {
			return t.Server
		}
	}
	return ""
}

// podLister adapts a namespaced lister to podLookup.
type podLister struct {
	l corelisters.PodNamespaceLister
}

func (p podLister) Get(name string) (*corev1.Pod, error) { return p.l.Get(name) }
func (p podLister) List(sel labels.Selector) ([]*corev1.Pod, error) {
	pods, err := p.l.List(sel)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, err
}
