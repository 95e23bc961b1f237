package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

type bench struct {
	cfg      config
	bin      string
	progress io.Writer
}

func buildCouchwatch(ctx context.Context, dir string) (string, error) {
	return benchkit.BuildCouchwatch(ctx, dir)
}

// cell is the outcome of one method x fault repetition.
type cell struct {
	Method, Fault string
	Detected      bool
	Detect        time.Duration            // fault -> target server out of rotation
	MarkedDown    bool                     // the target was put in maint or HAProxy marked it DOWN
	DownAfter     time.Duration            // fault -> marked down, when MarkedDown
	MinWeight     int                      // lowest weight the target had while in rotation (-1: never seen)
	OthersOut     map[string]time.Duration // other servers that left rotation, and when
	Sent, Failed  int
	Statuses      map[int]int // non-200 statuses and client errors (key 0)
	Stuck         int         // requests slower than 1 s (stuck on a hung node)
}

func (c cell) String() string {
	if slowFault(c.Fault) {
		down := "never marked down"
		if c.MarkedDown {
			down = "marked down after " + benchkit.Ms(c.DownAfter)
		}
		out := "stayed in rotation"
		if c.Detected {
			out = "out of rotation after " + benchkit.Ms(c.Detect)
		}
		return fmt.Sprintf("%s; %s; lowest weight %d; others out %d; failed %d/%d %v; stuck>1s %d",
			down, out, c.MinWeight, len(c.OthersOut), c.Failed, c.Sent, c.Statuses, c.Stuck)
	}
	d := "not detected"
	if c.Detected {
		d = benchkit.Ms(c.Detect)
	}
	return fmt.Sprintf("out of rotation after %s; others out %d; failed %d/%d %v; stuck>1s %d",
		d, len(c.OthersOut), c.Failed, c.Sent, c.Statuses, c.Stuck)
}

func serverName(i int) string { return fmt.Sprintf("couchdb%d", i+1) }

// env is what one cell runs against.
type env struct {
	cluster *couchtest.Cluster
	hap     *haproxytest.Proc
	cw      *benchkit.Couchwatch
	closers []func()
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// setup starts a cluster, the method's checker and HAProxy, and waits until every
// server is in rotation (and couchwatch sees every node up).
func (b *bench) setup(ctx context.Context, m method) (*env, error) {
	e := &env{}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	var err error
	if e.cluster, err = couchtest.Start(nodes, couchtest.Options{}); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.cluster.Close)
	user, pass := e.cluster.User(), e.cluster.Password()
	agentPort := 0
	if m.Agent {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("agent listen: %w", err)
		}
		agentPort = ln.Addr().(*net.TCPAddr).Port
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		agent := newCHTAgent(e.cluster.Nodes()[0].Addr(), user, pass)
		go func() {
			defer close(done)
			_ = agent.serve(actx, ln)
		}()
		e.closers = append(e.closers, func() { cancel(); <-done })
	}
	var specs []haproxytest.ServerSpec
	for i, n := range e.cluster.Nodes() {
		specs = append(specs, haproxytest.ServerSpec{Name: serverName(i), Addr: n.Addr()})
	}
	if e.hap, err = haproxytest.Start(m.haproxyOptions(specs, user, pass, agentPort)); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = e.hap.Close() })
	if m.Tuning != nil {
		e.cw, err = benchkit.StartCouchwatch(ctx, b.bin, benchkit.CouchwatchEnv{
			Servers: e.cluster.Targets(), User: user, Password: pass, Socket: e.hap.Socket(), Tuning: m.Tuning,
		}, 20*time.Second)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { _ = e.cw.Stop() })
		if err := e.cw.WaitVerdicts(ctx, "up", nodes, 20*time.Second); err != nil {
			return nil, fmt.Errorf("couchwatch: %w\n%s", err, e.cw.Output())
		}
	}
	err = benchkit.WaitFor(ctx, 20*time.Second, 20*time.Millisecond, func() (bool, error) {
		st, err := benchkit.ReadStates(e.hap.Socket(), e.hap.Backend())
		if err != nil {
			return false, nil
		}
		for i := range nodes {
			if !st[serverName(i)].InRotation() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("servers not all in rotation before the fault: %w\n%s", err, e.hap.Output())
	}
	ok = true
	return e, nil
}

// poller records when each server first leaves rotation after the fault.
type poller struct {
	mu        sync.Mutex
	t0        time.Time // zero before the fault
	out       map[string]time.Duration
	target    string
	detected  chan struct{}
	errs      int
	down      time.Duration // target marked down (maint or HAProxy DOWN) after, -1 if not
	minWeight int           // target's lowest weight while in rotation, -1 if not seen
}

func (p *poller) run(ctx context.Context, sock, backend string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := benchkit.ReadStates(sock, backend)
		now := time.Now()
		p.mu.Lock()
		if err != nil {
			p.errs++
		}
		if !p.t0.IsZero() && err == nil {
			for name, s := range st {
				if _, seen := p.out[name]; !seen && !s.InRotation() {
					p.out[name] = now.Sub(p.t0)
					if name == p.target {
						close(p.detected)
					}
				}
				if name == p.target {
					if p.down < 0 && (s.OpState != 2 || s.Admin&1 != 0) {
						p.down = now.Sub(p.t0)
					}
					if s.InRotation() && (p.minWeight < 0 || s.UWeight < p.minWeight) {
						p.minWeight = s.UWeight
					}
				}
			}
		}
		p.mu.Unlock()
	}
}

func (p *poller) mark(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t0 = t
}

func (p *poller) result() (map[string]time.Duration, time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]time.Duration{}
	for k, v := range p.out {
		out[k] = v
	}
	return out, p.down, p.minWeight
}

// runCell runs one repetition of method m under fault.
func (b *bench) runCell(ctx context.Context, m method, fault string) (cell, error) {
	c := cell{Method: m.Key, Fault: fault}
	e, err := b.setup(ctx, m)
	if err != nil {
		return c, err
	}
	defer e.close()
	idx := b.cfg.FaultNode - 1
	node := e.cluster.Nodes()[idx]
	target := serverName(idx)

	pctx, stopPoll := context.WithCancel(ctx)
	p := &poller{out: map[string]time.Duration{}, target: target, detected: make(chan struct{}), down: -1, minWeight: -1}
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() { defer pwg.Done(); p.run(pctx, e.hap.Socket(), e.hap.Backend(), b.cfg.Poll) }()
	defer func() { stopPoll(); pwg.Wait() }()

	longest := b.cfg.Pre + 500*time.Millisecond + max(b.cfg.MaxDetect+b.cfg.Window, b.cfg.SlowWindow) + b.cfg.Tail
	loadCfg := benchkit.LoadConfig{
		URL: "http://" + e.hap.FrontendAddr() + "/medic", Rate: b.cfg.Rate,
		Max:     int(b.cfg.Rate*longest.Seconds()) + 1,
		Timeout: b.cfg.ClientTimeout, User: e.cluster.User(), Password: e.cluster.Password(),
	}
	stopLoad := make(chan struct{})
	resc := make(chan []benchkit.Result, 1)
	go func() { resc <- benchkit.RunLoad(ctx, loadCfg, stopLoad) }()

	// The fault lands at a random moment of the checkers' schedules (they probe every
	// 250-500 ms): a fixed delay after set-up would hit the same phase in every trial.
	if err := benchkit.Sleep(ctx, b.cfg.Pre+rand.N(500*time.Millisecond)); err != nil {
		close(stopLoad)
		<-resc
		return c, err
	}
	t0 := time.Now()
	p.mark(t0)
	switch fault {
	case faultCrash:
		node.Stop()
	case faultHang:
		node.Hang()
	case faultRamp:
		node.SetLatencyRamp(b.cfg.RampFrom, b.cfg.RampTo, b.cfg.RampOver)
	case faultLoad:
		node.SetLoad(1)
		node.SetLatencyPerInflight(5 * time.Millisecond)
	}
	resumed := false
	resume := func() {
		if fault == faultHang && !resumed {
			node.Resume()
			resumed = true
		}
	}
	defer resume()

	end := t0.Add(b.cfg.MaxDetect)
	if slowFault(fault) {
		// The node keeps answering: watch the whole window, whatever happens.
		end = t0.Add(b.cfg.SlowWindow)
	} else {
		select {
		case <-p.detected:
			c.Detected = true
			end = maxTime(t0.Add(b.cfg.Window), time.Now().Add(b.cfg.Tail))
		case <-time.After(b.cfg.MaxDetect):
		case <-ctx.Done():
		}
	}
	err = benchkit.Sleep(ctx, time.Until(end))
	// Resume first so requests stuck on the hung node finish (they are slow, not failed).
	resume()
	close(stopLoad)
	results := <-resc
	if err != nil {
		return c, err
	}
	out, down, minWeight := p.result()
	if d, ok := out[target]; ok {
		c.Detect = d
		c.Detected = true
	}
	c.MarkedDown, c.DownAfter, c.MinWeight = down >= 0, down, minWeight
	c.OthersOut = map[string]time.Duration{}
	for name, d := range out {
		if name != target {
			c.OthersOut[name] = d
		}
	}
	if len(c.OthersOut) > 0 && e.cw != nil {
		fmt.Fprintf(b.progress, "%s / %s: healthy servers left rotation %v; couchwatch's log:\n%s\n", m.Key, fault, c.OthersOut, tailLines(e.cw.Output(), 40))
	}
	c.Statuses = map[int]int{}
	for _, r := range results {
		c.Sent++
		if !r.OK() {
			c.Failed++
			c.Statuses[r.Status]++
		}
		if r.Latency > time.Second {
			c.Stuck++
		}
	}
	if c.Sent == 0 {
		return c, errors.New("no request was sent")
	}
	return c, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
