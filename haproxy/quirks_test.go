package haproxy_test

import (
	"context"
	"errors"
	"testing"

	cnruntime "github.com/haproxytech/client-native/v5/runtime"
	"github.com/haproxytech/client-native/v5/runtime/options"

	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// TestClientNativeQuirks pins the client-native v5.1.15 behaviours this package wraps,
// each beside what Runtime does instead, against a real HAProxy 2.6. If client-native
// is upgraded and a quirk disappears, this test says which wrapping may go.
func TestClientNativeQuirks(t *testing.T) {
	p := haproxytest.StartT(t, haproxytest.Options{Servers: threeServers(t)})
	var cn cnruntime.SingleRuntime
	if err := cn.Init(p.Socket(), 0, 0, options.RuntimeOptions{DoNotCheckRuntimeOnInit: true}); err != nil {
		t.Fatal(err)
	}
	rt := runtimeFor(t, p, false)
	ctx := context.Background()

	t.Run("invalid addr is a [4] reply that client-native accepts", func(t *testing.T) {
		if err := cn.SetServerAddr(backend, "n1", "bogus", 5984); err != nil {
			t.Fatalf("client-native now reports %v: the quirk is gone", err)
		}
		err := rt.Apply(ctx, []haproxy.Command{{Server: "n1", Op: "addr", Text: "set server couchdb-servers/n1 addr bogus port 5984"}})
		if !errors.Is(err, haproxy.ErrReply) {
			t.Fatalf("Runtime: err = %v, want ErrReply", err)
		}
	})

	t.Run("admin state parsed as hex", func(t *testing.T) {
		if _, err := p.Cmd("set server couchdb-servers/n2 state drain"); err != nil {
			t.Fatal(err)
		}
		defer p.Cmd("set server couchdb-servers/n2 state ready")
		srvs, err := cn.GetServersState(backend)
		if err != nil {
			t.Fatal(err)
		}
		var n3 string
		for _, s := range srvs {
			if s.Name == "n3" {
				n3 = s.AdminState
			}
		}
		// n3 tracks n2: srv_admin_state 16 (drain via track), read as 0x16 = maint.
		if n3 != "maint" {
			t.Fatalf("client-native says n3 is %q: the hex quirk is gone", n3)
		}
		obs, err := rt.State(ctx, backend)
		if err != nil {
			t.Fatal(err)
		}
		if s := byName(obs)["n3"]; s.Admin != haproxy.StateDrain {
			t.Fatalf("Runtime: n3 = %+v, want drain", s)
		}
	})

	t.Run("missing backend", func(t *testing.T) {
		// DESIGN.md §4 says client-native returns empty and nil here. Measured on
		// 2.6.12 through a plain stats socket it returns "[3] Can't find backend."
		// (its "set severity-output number" prefix makes the error visible); through
		// the master socket it may differ. Runtime does not depend on either.
		srvs, err := cn.GetServersState("nope")
		t.Logf("client-native GetServersState(nope) = %d servers, err %v", len(srvs), err)
		if _, err := rt.State(ctx, "nope"); !errors.Is(err, haproxy.ErrNoBackend) {
			t.Fatalf("Runtime: err = %v, want ErrNoBackend", err)
		}
	})

	t.Run("weight not in the model", func(t *testing.T) {
		if _, err := p.Cmd("set server couchdb-servers/n1 weight 42"); err != nil {
			t.Fatal(err)
		}
		obs, err := rt.State(ctx, backend)
		if err != nil {
			t.Fatal(err)
		}
		if s := byName(obs)["n1"]; s.Weight != 42 || s.UWeight != 42 {
			t.Fatalf("Runtime: n1 = %+v, want weight 42", s)
		}
	})
}
