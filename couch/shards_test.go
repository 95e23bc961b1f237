package couch_test

import (
	"context"
	"strings"
	"testing"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/couch/couchtest"
)

func TestParseShards(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"two ranges", `{"shards":{"00000000-7fffffff":["a@h"],"80000000-ffffffff":["b@h","c@h"]}}`, true},
		{"no shards object", `{"error":"not_found"}`, false},
		{"range without a node", `{"shards":{"00000000-ffffffff":[]}}`, false},
		{"not JSON", `<html>`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := couch.ParseShards(strings.NewReader(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil && couch.Classify(err) != couch.ReasonMalformed {
				t.Errorf("reason %s, want malformed", couch.Classify(err))
			}
			if tc.ok && strings.Join(m.Ranges(), ",") != "00000000-7fffffff,80000000-ffffffff" {
				t.Errorf("ranges %v", m.Ranges())
			}
		})
	}
	if _, err := couch.ParseAllDBs(strings.NewReader(`["_users",""]`)); couch.Classify(err) != couch.ReasonMalformed {
		t.Errorf("an empty database name: %v", err)
	}
}

func FuzzParseShards(f *testing.F) {
	f.Add([]byte(`{"shards":{"00000000-ffffffff":["a@h"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := couch.ParseShards(strings.NewReader(string(b)))
		if err == nil {
			for _, r := range m.Ranges() {
				if len(m[r]) == 0 {
					t.Fatalf("range %s accepted without a node", r)
				}
			}
		}
	})
}

// The client's cluster calls against the simulator, with require_valid_user.
func TestClusterCalls(t *testing.T) {
	c := couchtest.NewClusterT(t, 3, couchtest.Options{})
	c.SetConfig("cluster", "n", "1")
	c.SetConfig("cluster", "q", "12")
	targets, err := couch.ParseServers(c.Targets())
	if err != nil {
		t.Fatal(err)
	}
	n, err := couch.NewNode(targets[0], couch.Options{User: c.User(), Password: c.Password()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	dbs, err := n.AllDBs(ctx, 3)
	if err != nil || strings.Join(dbs, ",") != "_replicator,_users,medic" {
		t.Fatalf("AllDBs(3) = %v, %v", dbs, err)
	}
	m, err := n.Shards(ctx, "_users")
	if err != nil || len(m) != 12 {
		t.Fatalf("Shards(_users) = %v, %v", m, err)
	}
	if _, err := n.Shards(ctx, "nope"); couch.Classify(err) != couch.ReasonHTTP4xx {
		t.Errorf("Shards(nope): %v, want a 4xx", err)
	}
	body, err := n.Prometheus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fams, err := couch.ParsePrometheus(body, 5000); err != nil || len(fams) != 196 {
		t.Errorf("Prometheus: %d families, %v", len(fams), err)
	}
	old, err := n.SetConfigValue(ctx, "couchdb", "maintenance_mode", "nolb")
	if err != nil || old != "false" || c.Nodes()[0].Status().Maintenance != "nolb" {
		t.Fatalf("SetConfigValue = %q, %v; node maintenance %q", old, err, c.Nodes()[0].Status().Maintenance)
	}
	if up, err := n.Up(ctx); err != nil || up.Status != couch.StatusNoLB {
		t.Errorf("/_up after nolb: %+v, %v", up, err)
	}
}
