package haproxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

func bigBackend(tb testing.TB, n int) *haproxytest.Proc {
	tb.Helper()
	specs := make([]haproxytest.ServerSpec, n)
	for i := range specs {
		specs[i] = haproxytest.ServerSpec{Name: fmt.Sprintf("s%03d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 20000+i)}
	}
	return haproxytest.StartT(tb, haproxytest.Options{Servers: specs})
}

// One State+Plan+Apply pass on a 300-server backend, flipping every server's weight
// (300 commands per pass).
func BenchmarkReconcile300(b *testing.B) {
	p := bigBackend(b, 300)
	rt := runtimeFor(b, p, false)
	r := haproxy.NewReconciler(rt, haproxy.Budget{}, nil, nil)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := haproxy.Desired{Servers: map[string]haproxy.Want{}}
		for j := range 300 {
			d.Servers[fmt.Sprintf("s%03d", j)] = haproxy.Want{Weight: 1 + (i+j)%2, Reason: "up"}
		}
		res, err := r.Reconcile(ctx, d)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Commands) < 150 {
			b.Fatalf("only %d commands", len(res.Commands))
		}
	}
}

func TestReconcile300Fast(t *testing.T) {
	p := bigBackend(t, 300)
	rt := runtimeFor(t, p, false)
	r := haproxy.NewReconciler(rt, haproxy.Budget{MinReady: 1}, nil, nil)
	d := haproxy.Desired{Servers: map[string]haproxy.Want{}}
	for j := range 300 {
		st := haproxy.StateDrain
		if j%3 == 0 {
			st = haproxy.StateMaint
		}
		d.Servers[fmt.Sprintf("s%03d", j)] = haproxy.Want{State: st, Weight: 2, Reason: "saturated"}
	}
	start := time.Now()
	res, err := r.Reconcile(context.Background(), d)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Commands) != 599 || len(res.Skipped) != 1 {
		t.Fatalf("%d commands, %d skips; want 599 (300 weights, 299 take-outs) and 1 last-ready skip", len(res.Commands), len(res.Skipped))
	}
	// Not asserted: a busy CI machine can make any bound fail; BenchmarkReconcile300
	// and bench/scale measure it.
	all, err := p.Servers(haproxytest.DefaultBackend)
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, s := range all {
		if s.AdminBits == 0 {
			ready++
		}
		if s.UWeight != 2 {
			t.Fatalf("%s weight %d, want 2", s.Name, s.UWeight)
		}
	}
	if ready != 1 {
		t.Fatalf("%d ready servers after the pass, want exactly 1", ready)
	}
	t.Logf("300-server pass: %s", elapsed)
}
