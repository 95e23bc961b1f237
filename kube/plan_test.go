package kube

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	st := map[string]serverState{
		"hot":   {Known: true, Hot: true, Score: 0.9},
		"hot2":  {Known: true, Hot: true, Score: 0.95},
		"cool":  {Known: true, Cool: true, Score: 0.1},
		"warm":  {Known: true, Score: 0.6},
		"unk":   {},
		"cool2": {Known: true, Cool: true},
	}
	names := func(ws []want) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Node+":"+w.Reason)
		}
		return out
	}
	tests := []struct {
		name                string
		nodes               []nodeView
		unplaced            map[string]bool
		clears, keeps, sets []string
	}{
		{name: "hot unflagged node is flagged", nodes: []nodeView{{Name: "n1", Servers: []string{"hot"}}, {Name: "n2", Servers: []string{"warm"}}},
			sets: []string{"n1:saturated"}},
		{name: "most loaded first", nodes: []nodeView{{Name: "n1", Servers: []string{"hot"}}, {Name: "n2", Servers: []string{"hot2"}}},
			sets: []string{"n2:saturated", "n1:saturated"}},
		{name: "flagged and still warm is kept", nodes: []nodeView{{Name: "n1", Flagged: true, TaintFor: "warm", Servers: []string{"warm"}}},
			keeps: []string{"n1:saturated"}},
		{name: "flagged and cool is cleared", nodes: []nodeView{{Name: "n1", Flagged: true, TaintFor: "cool", Servers: []string{"cool"}}},
			clears: []string{"n1:recovered"}},
		{name: "unknown never clears", nodes: []nodeView{{Name: "n1", Flagged: true, TaintFor: "unk", Servers: []string{"unk"}}},
			keeps: []string{"n1:saturated"}},
		{name: "unknown never flags", nodes: []nodeView{{Name: "n1", Servers: []string{"unk"}}}},
		{name: "every CouchDB on the node must cool", nodes: []nodeView{{Name: "n1", Flagged: true, Servers: []string{"cool", "warm"}}},
			keeps: []string{"n1:saturated"}},
		{name: "two cool CouchDBs clear", nodes: []nodeView{{Name: "n1", Flagged: true, Servers: []string{"cool", "cool2"}}},
			clears: []string{"n1:recovered"}},
		{name: "flagged node without CouchDB is stale", nodes: []nodeView{{Name: "n1", Flagged: true, TaintFor: "gone"}},
			clears: []string{"n1:stale"}},
		{name: "flagged node whose CouchDB cannot be placed is kept", nodes: []nodeView{{Name: "n1", Flagged: true, TaintFor: "hot"}},
			unplaced: map[string]bool{"hot": true}, keeps: []string{"n1:saturated"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, k, s := plan(tc.nodes, st, tc.unplaced)
			for _, x := range []struct {
				what      string
				got, want []string
			}{{"clears", names(c), tc.clears}, {"keeps", names(k), tc.keeps}, {"sets", names(s), tc.sets}} {
				if !reflect.DeepEqual(x.got, x.want) {
					t.Errorf("%s = %v, want %v", x.what, x.got, x.want)
				}
			}
		})
	}
}

func TestGuard(t *testing.T) {
	var be *BudgetError
	tests := []struct {
		name       string
		max        int
		dry        bool
		flagged    int
		couchHosts int
		budget     bool
		dryRun     bool
	}{
		{name: "first of three", max: 1, couchHosts: 3},
		{name: "max reached", max: 1, flagged: 1, couchHosts: 3, budget: true},
		{name: "never every CouchDB host", max: 5, flagged: 2, couchHosts: 3, budget: true},
		{name: "single CouchDB host is never flagged", max: 1, couchHosts: 1, budget: true},
		{name: "zero max disables flagging", max: 0, couchHosts: 3, budget: true},
		{name: "dry run after the budget", max: 1, dry: true, couchHosts: 3, dryRun: true},
		{name: "budget before dry run", max: 1, dry: true, flagged: 1, couchHosts: 3, budget: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := guard{maxFlagged: tc.max, dryRun: tc.dry}
			err := g.flag("n", tc.flagged, tc.couchHosts)
			if errors.As(err, &be) != tc.budget || errors.Is(err, ErrDryRun) != tc.dryRun {
				t.Fatalf("flag = %v, want budget=%v dryRun=%v", err, tc.budget, tc.dryRun)
			}
			if !tc.budget && !tc.dryRun && err != nil {
				t.Fatalf("flag = %v, want nil", err)
			}
		})
	}
	t.Run("eviction cool-down", func(t *testing.T) {
		g := guard{}
		t0 := time.Unix(1000, 0)
		if err := g.evict(t0); err != nil {
			t.Fatal(err)
		}
		g.evicted(t0, time.Minute)
		var ce *CooldownError
		if err := g.evict(t0.Add(59 * time.Second)); !errors.As(err, &ce) {
			t.Fatalf("evict during cool-down = %v", err)
		}
		if err := g.evict(t0.Add(time.Minute)); err != nil {
			t.Fatalf("evict after cool-down = %v", err)
		}
	})
}
